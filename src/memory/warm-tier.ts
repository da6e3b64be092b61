/**
 * The warm tier: agents on disk (persistence.ts), their index, and the moves between disk and the
 * KV cache — a reload into fresh blocks, a snapshot read back from the cache, a write in the
 * background. Which agent moves when (LRU, budget, the hot tier's bookkeeping) is agent-memory.ts's.
 */
import type { KvCache } from "../../backends/contract.js";
import type { PagedKv, SequenceId } from "../../backends/kv-paging.js";
import type { Logger } from "../logging.js";
import { READ_CHUNK_BYTES } from "./agent-file.js";
import { AgentStore, type AgentRecord, type WarmEntry } from "./persistence.js";
import { ReadPool } from "./read-pool.js";
import { SnapshotBuffers } from "./snapshot-buffers.js";

/** Bytes of blocks an eviction reads back per exportBlocks call (default of `snapshotBatchBytes`). */
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

/** What is written of an agent: its tokens, the hashes of their full blocks and its KV sequence. */
export interface WarmSource {
  tenant: string;
  agentId: string;
  kvSequence: SequenceId;
  tokens: readonly number[];
  hashes: readonly string[];
  lastUsed: number;
}

/** An agent read back for writing: its record, and the snapshot buffers its blocks are views of. */
export interface Snapshot {
  record: AgentRecord;
  buffers: Uint8Array[];
}

/** An agent brought back from disk, and where the reload's time went. */
export interface Reloaded {
  kvSequence: SequenceId;
  tokens: number[];
  table: readonly number[];
  bytes: number;
  /** From opening the file to the last block imported. */
  elapsedMs: number;
  /** Before the first block: the file's lock, header and tokens, room in the cache. */
  openMs: number;
  /** Waiting for blocks still being read and checked. */
  readWaitMs: number;
  /** Handing verified blocks to the KV cache (the upload). */
  importMs: number;
}

const key = (tenant: string, agentId: string) => `${tenant}\0${agentId}`;

export class WarmTier {
  private readonly store: AgentStore;
  private readonly entries = new Map<string, WarmEntry>();
  private readonly pendingWrites = new Set<Promise<void>>();
  private readonly snapshotBuffers: SnapshotBuffers;

  constructor(
    options: WarmTierOptions,
    private readonly paging: PagedKv,
    private readonly cache: KvCache,
    private readonly logger: Logger,
    /** Called when the index changes (for the gauges). */
    private readonly changed: () => void,
    snapshot: { batchBytes?: number; keepBytes?: number } = {},
  ) {
    const { layers, kvHeads, headDim, blockSize, storage } = cache.spec;
    this.store = new AgentStore(
      options.directory,
      { ...options, layers, kvHeads, headDim, blockSize, storage, bytesPerBlock: cache.bytesPerBlock },
      logger,
    );
    const perBatch = Math.max(1, Math.floor((snapshot.batchBytes ?? SNAPSHOT_BATCH_BYTES) / cache.bytesPerBlock));
    this.snapshotBuffers = new SnapshotBuffers(
      perBatch * cache.bytesPerBlock,
      snapshot.keepBytes ?? SNAPSHOT_KEEP_BYTES,
    );
  }

  /** Rebuild the index from the cache directory (at start). */
  async start(): Promise<void> {
    // The reader threads of reloads start with the server, not on the first reload, with the buffers
    // they read into.
    ReadPool.shared().start(READ_CHUNK_BYTES);
    for (const entry of await this.store.scan()) this.entries.set(key(entry.tenant, entry.agentId), entry);
    this.logger.info(`agent memory: ${this.entries.size} agent(s) on disk`);
  }

  get size(): number {
    return this.entries.size;
  }

  has(tenant: string, agentId: string): boolean {
    return this.entries.has(key(tenant, agentId));
  }

  all(): IterableIterator<WarmEntry> {
    return this.entries.values();
  }

  /**
   * Bring an agent back from disk into fresh blocks; undefined when absent, unusable or out of room
   * (`makeRoom(blocks)` may free some first). Blocks are imported chunk by chunk as the file is read
   * and verified; a block that fails its check later on frees the sequence, so nothing imported from
   * a bad file is ever used or shared.
   */
  async reload(
    tenant: string,
    agentId: string,
    makeRoom: (blocks: number) => Promise<unknown>,
  ): Promise<Reloaded | undefined> {
    if (!this.has(tenant, agentId)) return undefined;
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
    const outcome = await this.store
      .loadInto(tenant, agentId, {
        begin: async (preamble) => {
          const needed = preamble.blockCount;
          if (this.paging.freeBlockCount < needed) await makeRoom(needed - this.paging.freeBlockCount);
          if (this.paging.freeBlockCount < needed) {
            this.logger.warning(
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
      if (outcome === "miss" && this.entries.delete(key(tenant, agentId))) this.changed();
      return undefined;
    }
    const bytes = table.length * bytesPerBlock;
    const elapsedMs = performance.now() - started;
    this.logger.debug(
      `agent memory: agent ${JSON.stringify(agentId)} reloaded from disk (${tokens.length} tokens, ` +
        `${(bytes / 2 ** 20).toFixed(1)} MiB in ${elapsedMs.toFixed(0)} ms, ${(bytes / elapsedMs / 1e6).toFixed(2)} GB/s, ` +
        `of it ${openMs.toFixed(0)} ms opening and checking the file, ${readWaitMs.toFixed(0)} ms waiting for reads, ` +
        `${importMs.toFixed(0)} ms handing blocks to the KV cache)`,
    );
    return { kvSequence, tokens, table, bytes, elapsedMs, openMs, readWaitMs, importMs };
  }

  /**
   * The agent read back from the KV cache, into snapshot buffers (given back by `write`). In batches,
   * one buffer or view each (SnapshotBuffers.takeAll): an agent can outgrow the largest typed array
   * (4 GiB; a 32K-token agent of an 8B model in f16 is 4.3 GB). Its blocks may be freed once this
   * resolves.
   */
  async snapshot(agent: WarmSource): Promise<Snapshot> {
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
      blockHashes: [...agent.hashes],
      blocks,
      updatedAt: agent.lastUsed,
    };
    return { record, buffers };
  }

  /**
   * Write a snapshot to disk, then give its buffers back. A failed write is logged, not thrown: the
   * agent's previous file, if any, stays as it was (writes are atomic).
   */
  async write({ record, buffers }: Snapshot): Promise<void> {
    try {
      const { path, bytes } = await this.store.save(record);
      this.entries.set(key(record.tenant, record.agentId), {
        tenant: record.tenant,
        agentId: record.agentId,
        path,
        tokenCount: record.tokens.length,
        bytes,
        updatedAt: record.updatedAt,
      });
      this.changed();
    } catch (error) {
      this.logger.error(
        `agent memory: could not write agent ${JSON.stringify(record.agentId)}: ${(error as Error).message}`,
      );
    } finally {
      this.snapshotBuffers.give(buffers);
    }
  }

  /** `write` off the request path; `writesDone` waits for it. */
  writeInBackground(snapshot: Snapshot): void {
    const write = this.write(snapshot);
    this.pendingWrites.add(write);
    void write.finally(() => this.pendingWrites.delete(write));
  }

  async writesDone(): Promise<void> {
    await Promise.all(this.pendingWrites);
  }

  /** Remove the agent's file and index entry; true when there was either. */
  async delete(tenant: string, agentId: string): Promise<boolean> {
    const indexed = this.entries.delete(key(tenant, agentId));
    const removed = await this.store.delete(tenant, agentId);
    if (indexed) this.changed();
    return indexed || removed;
  }
}
