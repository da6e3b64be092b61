/**
 * Agent KV memory: each agent's KV cache kept between turns, so only new tokens are prefilled.
 *
 * Tiers. Hot: the agent's tokens and a KV sequence in the engine's paged store — bounded by that
 * store's size (SEMANTIC_MLX_CACHE_BUDGET_MB, real bytes) and SEMANTIC_AGENT_MAX_AGENTS_IN_MEMORY.
 * Warm: a file in SEMANTIC_AGENT_CACHE_DIR (persistence.ts), reloaded on the agent's next request.
 * Idle agents leave the hot tier least-recently-used first, written to disk on the way out when
 * SEMANTIC_AGENT_EVICT_TO_DISK; blocks a running sequence holds are never freed under it (the
 * sequence holds its own references).
 *
 * Reuse. A request's prompt is matched token by token against the agent's cached tokens — the
 * tokens the model generated last turn included — and against content-addressed blocks shared by
 * every request of the tenant (prefix-index.ts); the longer match wins. The request's sequence is a
 * fork of the cache (full blocks shared, a partial one copied), so on divergence the new turn simply
 * keeps the common prefix, and the agent's cache becomes the new turn's sequence when it ends.
 */
import type { KvCache } from "../../backends/contract.js";
import type { PagedKv, SequenceId } from "../../backends/kv-paging.js";
import type { FinishReason } from "../engine/events.js";
import type { KvMemory, MemoryScope, PrefixReuse } from "../engine/kv-memory.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics.js";
import { AgentStore, validateAgentId, type AgentRecord, type WarmEntry } from "./persistence.js";
import { blockHashes, SharedBlockIndex } from "./prefix-index.js";
import { ReadPool } from "./read-pool.js";
import { SnapshotBuffers } from "./snapshot-buffers.js";
import { SettlingTurns } from "./settling-turns.js";

/** Bytes of blocks an eviction reads back per exportBlocks call (AgentMemoryOptions.snapshotBatchBytes). */
const SNAPSHOT_BATCH_BYTES = 64 * 2 ** 20;
/** Snapshot memory kept for the next eviction (see SnapshotBuffers). */
const SNAPSHOT_KEEP_BYTES = 1024 * 2 ** 20;

/** Where the warm tier lives and what its files must match (the KV geometry comes from the cache). */
export interface WarmTierOptions {
  directory: string;
  modelId: string;
  weightsFingerprint: string;
  tokenizerFingerprint: string;
  backend: string;
}

export interface AgentMemoryOptions {
  maxAgentsInMemory: number;
  lruEvictionEnabled: boolean;
  /** The warm tier: evicted agents (and, at shutdown, all changed ones) are written there. Null: none. */
  warm: WarmTierOptions | null;
  logger: Logger;
  metrics?: Metrics;
  /** Bytes read back per exportBlocks call when an agent is written (default 64 MiB; tests lower it). */
  snapshotBatchBytes?: number;
  /** Host memory kept for the next eviction's read-back (default 1 GiB; see SnapshotBuffers). */
  snapshotKeepBytes?: number;
}

/** An agent read back for writing: its record, and the snapshot buffers its blocks are views of. */
interface Snapshot {
  record: AgentRecord;
  buffers: Uint8Array[];
}

interface HotAgent {
  tenant: string;
  agentId: string;
  kvSequence: SequenceId;
  tokens: number[];
  /** Hashes of the full blocks of `tokens` (kept: a 32K-token agent has 2048 to chain each turn). */
  hashes: string[];
  lastUsed: number;
  /** Requests of this agent being served now. */
  inUse: number;
  /** Changed since it was last written to disk. */
  dirty: boolean;
}

export interface AgentInfo {
  agentId: string;
  tier: "hot" | "warm";
  tokens: number;
  bytes: number;
  lastUsed: number;
}

export interface MemoryStats {
  hotAgents: number;
  warmAgents: number;
  hotBytes: number;
  warmBytes: number;
  requests: number;
  hits: { hot: number; warm: number; shared: number };
  misses: number;
  reusedTokens: number;
  promptTokens: number;
  /** Agents read back from disk, their bytes, and the time from opening the file to blocks imported. */
  reloads: number;
  reloadBytes: number;
  reloadMs: number;
  /** Of reloadMs, the time spent handing verified blocks to the KV cache (the upload). */
  reloadImportMs: number;
  /** Of reloadMs, the time before the first block: the file's lock, header and tokens, room in the cache. */
  reloadOpenMs: number;
  /** Of reloadMs, the time spent waiting for blocks still being read and checked. */
  reloadReadWaitMs: number;
}

const key = (tenant: string, agentId: string) => `${tenant}\0${agentId}`;

export class AgentMemory implements KvMemory {
  private paging!: PagedKv;
  private cache!: KvCache;
  private snapshotBuffers!: SnapshotBuffers;
  private shared!: SharedBlockIndex;
  private store: AgentStore | null = null;
  private readonly hot = new Map<string, HotAgent>();
  private readonly warm = new Map<string, WarmEntry>();
  private readonly pendingSaves = new Set<Promise<void>>();
  /** Reloads in flight, so two requests of one agent read its file once. */
  private readonly reloading = new Map<string, Promise<HotAgent | undefined>>();
  /** Ended requests that hand their cache back after one more row (KvMemory.settling). */
  private readonly settlingTurns = new SettlingTurns();
  private readonly counters: Omit<MemoryStats, "hotAgents" | "warmAgents" | "hotBytes" | "warmBytes"> = {
    requests: 0,
    hits: { hot: 0, warm: 0, shared: 0 },
    misses: 0,
    reusedTokens: 0,
    promptTokens: 0,
    reloads: 0,
    reloadBytes: 0,
    reloadMs: 0,
    reloadImportMs: 0,
    reloadOpenMs: 0,
    reloadReadWaitMs: 0,
  };

  constructor(private readonly options: AgentMemoryOptions) {}

  attach(paging: PagedKv, cache: KvCache): void {
    this.paging = paging;
    this.cache = cache;
    const perBatch = Math.max(
      1,
      Math.floor((this.options.snapshotBatchBytes ?? SNAPSHOT_BATCH_BYTES) / cache.bytesPerBlock),
    );
    this.snapshotBuffers = new SnapshotBuffers(
      perBatch * cache.bytesPerBlock,
      this.options.snapshotKeepBytes ?? SNAPSHOT_KEEP_BYTES,
    );
    this.shared = new SharedBlockIndex(paging);
    const warm = this.options.warm;
    if (warm) {
      const { layers, kvHeads, headDim, blockSize, storage } = cache.spec;
      this.store = new AgentStore(
        warm.directory,
        { ...warm, layers, kvHeads, headDim, blockSize, storage, bytesPerBlock: cache.bytesPerBlock },
        this.options.logger,
      );
    }
  }

  /** Rebuild the warm index from the cache directory (at start). */
  async start(): Promise<void> {
    if (!this.store) return;
    // The reader threads of reloads start with the server, not on the first reload.
    ReadPool.shared().start();
    for (const entry of await this.store.scan()) this.warm.set(key(entry.tenant, entry.agentId), entry);
    this.options.logger.info(`agent memory: ${this.warm.size} agent(s) on disk`);
    this.updateGauges();
  }

  async acquire(scope: MemoryScope, promptTokens: readonly number[]): Promise<PrefixReuse> {
    // A follow-up that arrives while the previous turn settles waits for it (one row) and reuses it all.
    if (scope.agentId !== null) await this.settledAgent(scope.tenant, scope.agentId);
    const limit = promptTokens.length - 1;
    const blockSize = this.paging.blockSize;
    let agent = scope.agentId === null ? undefined : this.hot.get(key(scope.tenant, scope.agentId));
    let tier: "hot" | "warm" | "shared" | null = null;
    if (!agent && scope.agentId !== null) {
      const agentKey = key(scope.tenant, scope.agentId);
      let reload = this.reloading.get(agentKey);
      if (!reload) {
        reload = this.reload(scope.tenant, scope.agentId).finally(() => this.reloading.delete(agentKey));
        this.reloading.set(agentKey, reload);
      }
      agent = await reload;
      if (agent) tier = "warm";
    } else if (agent) tier = "hot";

    let reused = 0;
    /** Tokens the agent's cache shares with the prompt (before any rounding to whole blocks). */
    let reusedPrefix = 0;
    let kvSequence: SequenceId | null = null;
    if (agent) {
      agent.inUse++;
      agent.lastUsed = Date.now();
      reusedPrefix = Math.min(commonPrefix(agent.tokens, promptTokens), limit);
      reused = reusedPrefix;
      // A fork copies a partly filled last block: make room for it, or reuse whole blocks only.
      if (reused % blockSize !== 0 && this.paging.freeBlockCount === 0) await this.reclaim(1);
      if (reused % blockSize !== 0 && this.paging.freeBlockCount === 0) reused -= reused % blockSize;
      if (reused > 0) kvSequence = this.paging.fork(agent.kvSequence, reused);
      else tier = null;
    }
    const known = agent ? { hashes: agent.hashes, blocks: Math.floor(reusedPrefix / blockSize) } : null;
    // Blocks another agent of the tenant is about to hand back count too (it takes one row).
    await this.settledTenant(scope.tenant);
    const sharedBlocks = this.shared.lookup(blockHashes(scope.tenant, promptTokens.slice(0, limit), blockSize, known));
    if (sharedBlocks.length * blockSize > reused) {
      if (kvSequence !== null) this.paging.free(kvSequence);
      reused = sharedBlocks.length * blockSize;
      kvSequence = this.paging.adopt(sharedBlocks, reused);
      tier = "shared";
    }
    kvSequence ??= this.paging.create();

    this.counters.requests++;
    this.counters.promptTokens += promptTokens.length;
    this.counters.reusedTokens += reused;
    if (tier) {
      this.counters.hits[tier]++;
      this.options.metrics?.cacheHits.inc({ tier });
    } else {
      this.counters.misses++;
      this.options.metrics?.cacheMisses.inc();
    }
    this.options.logger.debug(
      `agent memory: ${scope.agentId === null ? "request without agent id" : `agent ${JSON.stringify(scope.agentId)}`}: ` +
        `${promptTokens.length} prompt tokens, ${reused} reused ${tier ? `from ${tier === "shared" ? "shared blocks" : `the ${tier} tier`}` : "(miss)"}, ` +
        `${promptTokens.length - reused} to prefill`,
    );
    return { kvSequence, reusedTokens: reused };
  }

  release(
    scope: MemoryScope,
    kvSequence: SequenceId,
    tokens: readonly number[],
    outcome: FinishReason | "error",
  ): void {
    const agent = scope.agentId === null ? undefined : this.hot.get(key(scope.tenant, scope.agentId));
    if (agent) agent.inUse = Math.max(0, agent.inUse - 1);
    if (outcome === "error") {
      // What a failed step wrote is not to be trusted: nothing of it is kept or shared.
      this.paging.free(kvSequence);
      return;
    }
    const blockSize = this.paging.blockSize;
    const known = agent
      ? { hashes: agent.hashes, blocks: Math.floor(commonPrefix(agent.tokens, tokens) / blockSize) }
      : null;
    const hashes = blockHashes(scope.tenant, tokens, blockSize, known);
    this.shared.register(hashes, this.paging.blockTable(kvSequence));
    if (scope.agentId === null) {
      // Its blocks stay findable by hash until they are handed out again.
      this.paging.free(kvSequence);
      return;
    }
    if (agent) {
      this.paging.free(agent.kvSequence);
      Object.assign(agent, { kvSequence, tokens: [...tokens], hashes, lastUsed: Date.now(), dirty: true });
    } else {
      this.hot.set(key(scope.tenant, scope.agentId), {
        tenant: scope.tenant,
        agentId: scope.agentId,
        kvSequence,
        tokens: [...tokens],
        hashes,
        lastUsed: Date.now(),
        inUse: 0,
        dirty: true,
      });
    }
    this.enforceAgentLimit();
    this.updateGauges();
  }

  settling(scope: MemoryScope, settled: Promise<void>): void {
    if (scope.agentId !== null) this.settlingTurns.add(scope.tenant, scope.agentId, settled);
  }

  /**
   * Resolves once the agent has no turn settling (at once when it has none): what the Agent API
   * waits for before it describes an agent, so that it never shows the state before the last answer.
   */
  async settledAgent(tenant: string, agentId: string): Promise<void> {
    await this.settlingTurns.ofAgent(tenant, agentId);
  }

  /** Resolves once no agent of the tenant has a turn settling. */
  async settledTenant(tenant: string): Promise<void> {
    await this.settlingTurns.ofTenant(tenant);
  }

  async reclaim(blocks: number): Promise<number> {
    if (!this.options.lruEvictionEnabled) return 0;
    const before = this.paging.freeBlockCount;
    const idle = [...this.hot.values()].filter((agent) => agent.inUse === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const agent of idle) {
      if (this.paging.freeBlockCount - before >= blocks) break;
      await this.evict(agent, "to make room in the KV cache");
    }
    return this.paging.freeBlockCount - before;
  }

  /** Write every changed hot agent and wait for writes in flight (at shutdown). */
  async flush(): Promise<void> {
    await this.settlingTurns.all();
    if (this.store) {
      for (const agent of this.hot.values()) if (agent.dirty) await this.save(agent);
    }
    await Promise.all(this.pendingSaves);
  }

  /**
   * Register an agent before its first request (the Agent API's create); false when it already exists
   * in either tier. It holds no KV until it is used, and is kept (on disk too) like any other.
   */
  create(tenant: string, agentId: string): boolean {
    validateAgentId(agentId);
    if (this.get(tenant, agentId) !== null || this.reloading.has(key(tenant, agentId))) return false;
    this.hot.set(key(tenant, agentId), {
      tenant,
      agentId,
      kvSequence: this.paging.create(),
      tokens: [],
      hashes: [],
      lastUsed: Date.now(),
      inUse: 0,
      dirty: true,
    });
    this.enforceAgentLimit();
    this.updateGauges();
    return true;
  }

  list(tenant: string): AgentInfo[] {
    const agents = new Map<string, AgentInfo>();
    for (const entry of this.warm.values()) {
      if (entry.tenant !== tenant) continue;
      agents.set(entry.agentId, {
        agentId: entry.agentId,
        tier: "warm",
        tokens: entry.tokenCount,
        bytes: entry.bytes,
        lastUsed: entry.updatedAt,
      });
    }
    for (const agent of this.hot.values()) {
      if (agent.tenant !== tenant) continue;
      agents.set(agent.agentId, {
        agentId: agent.agentId,
        tier: "hot",
        tokens: agent.tokens.length,
        bytes: this.bytesOf(agent),
        lastUsed: agent.lastUsed,
      });
    }
    return [...agents.values()].sort((a, b) => b.lastUsed - a.lastUsed);
  }

  get(tenant: string, agentId: string): AgentInfo | null {
    return this.list(tenant).find((agent) => agent.agentId === agentId) ?? null;
  }

  /** Move an idle agent from memory to disk now (the Agent API's "evict"); false when it is not hot. */
  async evictAgent(tenant: string, agentId: string): Promise<boolean> {
    await this.settledAgent(tenant, agentId);
    const agent = this.hot.get(key(tenant, agentId));
    if (!agent || agent.inUse > 0) return false;
    await this.evict(agent, "on request");
    await Promise.all(this.pendingSaves);
    return true;
  }

  /** Forget an agent in every tier; true when there was something to forget. */
  async delete(tenant: string, agentId: string): Promise<boolean> {
    // A turn still settling would bring the agent back after it was forgotten.
    await this.settledAgent(tenant, agentId);
    const agent = this.hot.get(key(tenant, agentId));
    if (agent) {
      this.paging.free(agent.kvSequence);
      this.hot.delete(key(tenant, agentId));
    }
    const onDisk = this.warm.delete(key(tenant, agentId));
    const removed = this.store ? await this.store.delete(tenant, agentId) : false;
    this.updateGauges();
    return agent !== undefined || onDisk || removed;
  }

  stats(): MemoryStats {
    let hotBytes = 0;
    for (const agent of this.hot.values()) hotBytes += this.bytesOf(agent);
    let warmBytes = 0;
    for (const entry of this.warm.values()) warmBytes += entry.bytes;
    return {
      hotAgents: this.hot.size,
      warmAgents: this.warm.size,
      hotBytes,
      warmBytes,
      ...this.counters,
      hits: { ...this.counters.hits },
    };
  }

  private bytesOf(agent: HotAgent): number {
    return this.paging.blockTable(agent.kvSequence).length * this.cache.bytesPerBlock;
  }

  /**
   * Bring an agent back from disk into fresh blocks; undefined when absent, unusable or out of room.
   * Blocks are imported chunk by chunk as the file is read and verified; a block that fails its
   * check later on frees the sequence, so nothing imported from a bad file is ever used or shared.
   */
  private async reload(tenant: string, agentId: string): Promise<HotAgent | undefined> {
    const store = this.store;
    if (!store || !this.warm.has(key(tenant, agentId))) return undefined;
    const started = performance.now();
    // Filled in by `begin`, once the file's header and tokens have passed.
    const target: { kvSequence?: SequenceId; table: readonly number[]; tokens: number[] } = { table: [], tokens: [] };
    const bytesPerBlock = this.cache.bytesPerBlock;
    let importMs = 0;
    let openMs = 0;
    let readWaitMs = 0;
    // When the reload last stopped waiting on the cache (its `begin`, or the previous import).
    let readyAt = 0;
    const freeTarget = () => {
      if (target.kvSequence !== undefined) this.paging.free(target.kvSequence);
    };
    const outcome = await store
      .loadInto(tenant, agentId, {
        begin: async (preamble) => {
          const needed = preamble.blockCount;
          if (this.paging.freeBlockCount < needed) await this.reclaim(needed - this.paging.freeBlockCount);
          if (this.paging.freeBlockCount < needed) {
            this.options.logger.warning(
              `agent memory: agent ${JSON.stringify(agentId)} (${needed} blocks on disk) does not fit in the KV cache now; prefilling instead`,
            );
            return false;
          }
          target.kvSequence = this.paging.create();
          this.paging.append(target.kvSequence, preamble.tokens.length);
          target.table = this.paging.blockTable(target.kvSequence);
          target.tokens = Array.from(preamble.tokens);
          readyAt = performance.now();
          openMs = readyAt - started;
          return true;
        },
        blocks: async (first, bytes) => {
          const importStarted = performance.now();
          readWaitMs += importStarted - readyAt;
          await this.cache.importBlocks(target.table.slice(first, first + bytes.byteLength / bytesPerBlock), bytes);
          readyAt = performance.now();
          importMs += readyAt - importStarted;
        },
      })
      .catch((error: unknown) => {
        freeTarget();
        throw error;
      });
    const { kvSequence, table, tokens } = target;
    if (outcome !== "loaded" || kvSequence === undefined) {
      freeTarget();
      if (outcome === "miss") this.warm.delete(key(tenant, agentId));
      return undefined;
    }
    const bytes = table.length * bytesPerBlock;
    const elapsed = performance.now() - started;
    this.counters.reloads++;
    this.counters.reloadBytes += bytes;
    this.counters.reloadMs += elapsed;
    this.counters.reloadImportMs += importMs;
    this.counters.reloadOpenMs += openMs;
    this.counters.reloadReadWaitMs += readWaitMs;
    const hashes = blockHashes(tenant, tokens, this.paging.blockSize);
    this.shared.register(hashes, table);
    const agent: HotAgent = {
      tenant,
      agentId,
      kvSequence,
      tokens,
      hashes,
      lastUsed: Date.now(),
      inUse: 0,
      dirty: false,
    };
    this.hot.set(key(tenant, agentId), agent);
    this.options.logger.debug(
      `agent memory: agent ${JSON.stringify(agentId)} reloaded from disk (${tokens.length} tokens, ` +
        `${(bytes / 2 ** 20).toFixed(1)} MiB in ${elapsed.toFixed(0)} ms, ${(bytes / elapsed / 1e6).toFixed(2)} GB/s, ` +
        `of it ${openMs.toFixed(0)} ms opening and checking the file, ${readWaitMs.toFixed(0)} ms waiting for reads, ` +
        `${importMs.toFixed(0)} ms handing blocks to the KV cache)`,
    );
    this.updateGauges();
    return agent;
  }

  private enforceAgentLimit(): void {
    if (!this.options.lruEvictionEnabled || this.hot.size <= this.options.maxAgentsInMemory) return;
    const idle = [...this.hot.values()].filter((agent) => agent.inUse === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const agent of idle.slice(0, this.hot.size - this.options.maxAgentsInMemory)) {
      void this.evict(agent, `more than ${this.options.maxAgentsInMemory} agents in memory`);
    }
  }

  /** Leave the hot tier: export the blocks (when kept on disk), free them, write in the background. */
  private async evict(agent: HotAgent, why: string): Promise<void> {
    if (this.hot.get(key(agent.tenant, agent.agentId)) !== agent) return;
    this.hot.delete(key(agent.tenant, agent.agentId));
    const keep = this.store !== null;
    const snapshot = keep && agent.dirty ? await this.snapshot(agent) : null;
    this.paging.free(agent.kvSequence);
    this.options.logger.debug(
      `agent memory: evicted agent ${JSON.stringify(agent.agentId)} (${agent.tokens.length} tokens) ${why}${keep ? ", to disk" : ""}`,
    );
    if (snapshot) this.track(this.write(snapshot));
    this.updateGauges();
  }

  private async save(agent: HotAgent): Promise<void> {
    const snapshot = await this.snapshot(agent);
    agent.dirty = false;
    await this.write(snapshot);
  }

  /**
   * The agent read back from the KV cache, into snapshot buffers (given back by `write`). In batches,
   * one buffer or view each (SnapshotBuffers.takeAll): an agent can outgrow the largest typed array
   * (4 GiB; a 32K-token agent of an 8B model in f16 is 4.3 GB).
   */
  private async snapshot(agent: HotAgent): Promise<Snapshot> {
    const table = this.paging.blockTable(agent.kvSequence);
    const size = this.cache.bytesPerBlock;
    const perBatch = this.snapshotBuffers.bufferBytes / size;
    const blocks: Uint8Array[] = [];
    const batches: number[][] = [];
    for (let first = 0; first < table.length; first += perBatch) batches.push(table.slice(first, first + perBatch));
    const buffers = this.snapshotBuffers.takeAll(batches.map((batch) => batch.length * size));
    try {
      for (const [index, batch] of batches.entries()) {
        const bytes = await this.cache.exportBlocks(batch, buffers[index]!.subarray(0, batch.length * size));
        batch.forEach((_, i) => blocks.push(bytes.subarray(i * size, (i + 1) * size)));
      }
    } catch (error) {
      this.snapshotBuffers.give(buffers);
      throw error;
    }
    const record: AgentRecord = {
      tenant: agent.tenant,
      agentId: agent.agentId,
      tokens: Uint32Array.from(agent.tokens),
      blockHashes: agent.hashes,
      blocks,
      updatedAt: agent.lastUsed,
    };
    return { record, buffers };
  }

  /** Write a snapshot to the warm tier, then give its buffers back. */
  private async write({ record, buffers }: Snapshot): Promise<void> {
    try {
      const { path, bytes } = await this.store!.save(record);
      this.warm.set(key(record.tenant, record.agentId), {
        tenant: record.tenant,
        agentId: record.agentId,
        path,
        tokenCount: record.tokens.length,
        bytes,
        updatedAt: record.updatedAt,
      });
      this.updateGauges();
    } catch (error) {
      this.options.logger.error(
        `agent memory: could not write agent ${JSON.stringify(record.agentId)}: ${(error as Error).message}`,
      );
    } finally {
      this.snapshotBuffers.give(buffers);
    }
  }

  private track(save: Promise<void>): void {
    this.pendingSaves.add(save);
    void save.finally(() => this.pendingSaves.delete(save));
  }

  private updateGauges(): void {
    this.options.metrics?.activeAgents.set({ tier: "hot" }, this.hot.size);
    this.options.metrics?.activeAgents.set({ tier: "warm" }, this.warm.size);
  }
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const length = Math.min(a.length, b.length);
  let i = 0;
  while (i < length && a[i] === b[i]) i++;
  return i;
}
