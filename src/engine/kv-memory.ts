/**
 * What the engine asks of a KV memory (src/memory/ implements it): before a request is prefilled, a
 * KV sequence already holding the longest reusable prefix of its prompt; after it ends, the sequence
 * back, to keep for the agent's next turn; when blocks run short, room made by evicting idle caches.
 * Without one, every request starts from an empty sequence and its blocks are freed when it ends.
 */
import type { KvCache } from "../../backends/contract.js";
import type { PagedKv, SequenceId } from "../../backends/kv-paging.js";
import type { FinishReason } from "./events.js";

/** Who a request belongs to: caches are reused within an agent, blocks shared within a tenant. */
export interface MemoryScope {
  /** The agent (session) id the protocol supplied, or null for requests that name none. */
  agentId: string | null;
  /** Blocks are shared only between requests of the same tenant (an API-key fingerprint). */
  tenant: string;
}

export interface PrefixReuse {
  kvSequence: SequenceId;
  /** Prompt tokens whose K/V the sequence already holds. */
  reusedTokens: number;
}

export interface KvMemory {
  /** Called once, when the engine has created its cache. */
  attach(paging: PagedKv, cache: KvCache): void;
  /**
   * A sequence holding a prefix of `promptTokens` (never all of it: the last prompt token is always
   * computed, for its logits). May load from disk.
   */
  acquire(scope: MemoryScope, promptTokens: readonly number[]): Promise<PrefixReuse>;
  /**
   * The request ended; `tokens` are those whose K/V `kvSequence` holds. The memory owns the sequence
   * from here: it keeps it for the agent or frees it.
   */
  release(scope: MemoryScope, kvSequence: SequenceId, tokens: readonly number[], outcome: FinishReason | "error"): void;
  /**
   * A named agent's request has ended but its cache comes back (release) only when `settled`
   * resolves, after one more row writes its last generated token's K/V. Until then the agent's next
   * lookup, eviction or deletion waits: it would otherwise miss that turn.
   */
  settling(scope: MemoryScope, settled: Promise<void>): void;
  /** Free at least `blocks` KV blocks by evicting idle caches, if it can; resolves to how many it freed. */
  reclaim(blocks: number): Promise<number>;
}
