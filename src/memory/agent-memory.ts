/**
 * Agent KV memory: each agent's KV cache kept between turns, so only new tokens are prefilled.
 *
 * Tiers. Hot: the agent's tokens and a KV sequence in the engine's paged store — bounded by that
 * store's size (SEMANTIC_MLX_CACHE_BUDGET_MB, real bytes) and SEMANTIC_AGENT_MAX_AGENTS_IN_MEMORY.
 * Warm: a file in SEMANTIC_AGENT_CACHE_DIR (warm-tier.ts), reloaded on the agent's next request.
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
import { validateAgentId } from "./persistence.js";
import { blockHashes, SharedBlockIndex } from "./prefix-index.js";
import { SettlingTurns } from "./settling-turns.js";
import { WarmTier, type WarmTierOptions } from "./warm-tier.js";

export type { WarmTierOptions } from "./warm-tier.js";

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
  private shared!: SharedBlockIndex;
  private warm: WarmTier | null = null;
  private readonly hot = new Map<string, HotAgent>();
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
    this.shared = new SharedBlockIndex(paging);
    const { warm, logger, snapshotBatchBytes, snapshotKeepBytes } = this.options;
    if (warm) {
      this.warm = new WarmTier(warm, paging, cache, logger, () => this.updateGauges(), {
        batchBytes: snapshotBatchBytes,
        keepBytes: snapshotKeepBytes,
      });
    }
  }

  /** Rebuild the warm index from the cache directory (at start). */
  async start(): Promise<void> {
    await this.warm?.start();
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
    // (No slice of the prompt for the limit: copying 32K tokens took ~0.3 ms of a hot turn's lookup.)
    const sharedBlocks = this.shared.lookup(blockHashes(scope.tenant, promptTokens, blockSize, known, limit));
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
    if (this.warm) {
      for (const agent of this.hot.values()) {
        if (!agent.dirty) continue;
        const snapshot = await this.warm.snapshot(agent);
        agent.dirty = false;
        await this.warm.write(snapshot);
      }
      await this.warm.writesDone();
    }
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
    for (const entry of this.warm?.all() ?? []) {
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
    await this.warm?.writesDone();
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
    const onDisk = (await this.warm?.delete(tenant, agentId)) ?? false;
    this.updateGauges();
    return agent !== undefined || onDisk;
  }

  stats(): MemoryStats {
    let hotBytes = 0;
    for (const agent of this.hot.values()) hotBytes += this.bytesOf(agent);
    let warmBytes = 0;
    for (const entry of this.warm?.all() ?? []) warmBytes += entry.bytes;
    return {
      hotAgents: this.hot.size,
      warmAgents: this.warm?.size ?? 0,
      hotBytes,
      warmBytes,
      ...this.counters,
      hits: { ...this.counters.hits },
    };
  }

  private bytesOf(agent: HotAgent): number {
    return this.paging.blockTable(agent.kvSequence).length * this.cache.bytesPerBlock;
  }

  /** Bring an agent back from disk (WarmTier.reload), making room by evicting others if need be. */
  private async reload(tenant: string, agentId: string): Promise<HotAgent | undefined> {
    const reloaded = await this.warm?.reload(tenant, agentId, (blocks) => this.reclaim(blocks));
    if (!reloaded) return undefined;
    const { kvSequence, tokens, table } = reloaded;
    this.counters.reloads++;
    this.counters.reloadBytes += reloaded.bytes;
    this.counters.reloadMs += reloaded.elapsedMs;
    this.counters.reloadImportMs += reloaded.importMs;
    this.counters.reloadOpenMs += reloaded.openMs;
    this.counters.reloadReadWaitMs += reloaded.readWaitMs;
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
    const snapshot = this.warm && agent.dirty ? await this.warm.snapshot(agent) : null;
    this.paging.free(agent.kvSequence);
    this.options.logger.debug(
      `agent memory: evicted agent ${JSON.stringify(agent.agentId)} (${agent.tokens.length} tokens) ${why}${this.warm ? ", to disk" : ""}`,
    );
    if (snapshot) this.warm?.writeInBackground(snapshot);
    this.updateGauges();
  }

  private updateGauges(): void {
    this.options.metrics?.activeAgents.set({ tier: "hot" }, this.hot.size);
    this.options.metrics?.activeAgents.set({ tier: "warm" }, this.warm?.size ?? 0);
  }
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const length = Math.min(a.length, b.length);
  let i = 0;
  while (i < length && a[i] === b[i]) i++;
  return i;
}
