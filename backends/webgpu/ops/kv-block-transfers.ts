/**
 * Whole blocks between a WebGPU KV cache and host bytes laid out as an agent file holds them (each
 * block's words for layer 0 keys, layer 0 values, layer 1 keys, …): an eviction's export, a reload's
 * import. Both go through a packed buffer on the GPU of up to 64 MiB, one dispatch per layer of
 * kernels/kv_cache_blocks.wgsl between it and the cache's layer buffers, and the runtime's reused
 * mapped buffers between it and the host (`uploadBulk`, `downloadBulk`). Arguments are checked by
 * the cache (kv-cache.ts) before they get here.
 */
import { type GpuRuntime, type GpuTensor, Params } from "../runtime.js";
import { grid1d } from "./grid.js";

/**
 * Imported blocks whose scatter into the cache is not recorded yet: their bytes are in (or on their
 * way to) `packed`, slot by slot in import order. `blocks[i]` has arrived in slot i; slots from
 * `blocks.length` to `reserved` are being uploaded.
 */
interface PendingImports {
  packed: GpuTensor;
  blocks: number[];
  /** The blocks of slots scattered…blocks.length, to find one imported again before its scatter. */
  unscattered: Set<number>;
  reserved: number;
  /** Slots below this are scattered already. */
  scattered: number;
  uploading: boolean;
}

export class KvBlockTransfers {
  readonly bytesPerBlock: number;
  /** The batch that imports fill, scattered when anything next uses the cache (scatterImports). */
  private pending: PendingImports | null = null;
  /** Imports run one after another (each waits for the one before), so only the last is uploading. */
  private importsDone: Promise<void> = Promise.resolve();
  private batchBlocksForTests = 0;
  private disposed = false;

  constructor(
    private readonly runtime: GpuRuntime,
    private readonly layers: number,
    /** Words of one block in one layer's key (or value) buffer. */
    private readonly blockWords: number,
    private readonly keys: readonly GpuTensor[],
    private readonly values: readonly GpuTensor[],
  ) {
    this.bytesPerBlock = blockWords * 4 * 2 * layers;
  }

  /**
   * In batches of up to 64 MiB: one dispatch per layer (export_blocks) gathers a batch's blocks into
   * the packed buffer, which comes back through the runtime's reused mapped buffers (`downloadBulk`).
   * A copy per block and layer part into a new mappable buffer per batch read an H200 back at 0.56
   * GB/s (bench/reload.ts). Imports not yet in place are scattered first.
   */
  async exportBlocks(blocks: readonly number[], out: Uint8Array): Promise<void> {
    this.scatterImports();
    await this.inBatches(blocks, async (batch, first) => {
      const part = out.subarray(first * this.bytesPerBlock, (first + batch.length) * this.bytesPerBlock);
      await this.withPacked(batch, async (ids, packed) => {
        this.moveBlocks("export_blocks", ids, packed, 0, batch.length);
        await this.runtime.downloadBulk(packed, 0, part);
      });
    });
  }

  /**
   * The bytes go to the GPU as they are, into the packed buffer through the runtime's reused mapped
   * buffers (`uploadBulk`), and one dispatch per layer (import_blocks) scatters them into place. A
   * writeBuffer per block and layer part ran at ~0.5 GB/s on an H200 host, one writeBuffer per batch
   * at ~2.6 GB/s; the mapped buffers carry ~11–14 GB/s.
   *
   * The scatter waits: successive imports (a reload's chunks) fill one packed buffer, and its scatter
   * is recorded when it is full or when anything next uses the cache (the cache calls scatterImports
   * before attention binds a layer, a write, a copy, an export), so work recorded after this resolves
   * still sees the blocks. A scatter per chunk cost a reload one dispatch per layer and chunk: 144
   * for a 1K-token agent of the 1B model, 13–50 µs each on an H200 host.
   */
  importBlocks(blocks: readonly number[], bytes: Uint8Array): Promise<void> {
    const imported = this.importsDone.then(() => this.importInOrder(blocks, bytes));
    this.importsDone = imported.catch(() => undefined);
    return imported;
  }

  /**
   * Records the scatter of the imported blocks not yet in place, and gives the packed buffer back to
   * the pool, unless an upload into it is still under way: its blocks wait for a later call.
   */
  scatterImports(): void {
    const pending = this.pending;
    if (!pending || this.disposed) return;
    if (pending.blocks.length > pending.scattered) {
      const ids = this.runtime.allocate([this.blocksPerBatch], "u32");
      // runtime.upload submits recorded work first where the pooled buffer is still read by it.
      this.runtime.upload(ids, Uint32Array.from(pending.blocks.slice(pending.scattered)));
      const count = pending.blocks.length - pending.scattered;
      this.moveBlocks("import_blocks", ids, pending.packed, pending.scattered, count);
      this.runtime.release(ids);
      pending.scattered = pending.blocks.length;
      pending.unscattered.clear();
    }
    if (!pending.uploading) {
      this.runtime.release(pending.packed);
      this.pending = null;
    }
  }

  /** For tests: batches of `blocks` blocks (imports fill and scatter them, exports gather them). */
  useBatchBlocks(blocks: number): void {
    this.batchBlocksForTests = blocks;
  }

  /** Imports not yet scattered are dropped (the cache is going away). */
  dispose(): void {
    this.disposed = true;
    // An upload still under way into the packed buffer gives it back itself (releaseIfDetached).
    if (this.pending && !this.pending.uploading) this.runtime.release(this.pending.packed);
    this.pending = null;
  }

  private async importInOrder(blocks: readonly number[], bytes: Uint8Array): Promise<void> {
    if (this.disposed) throw new Error("KV cache: used after dispose()");
    const perBatch = this.blocksPerBatch;
    for (let first = 0; first < blocks.length;) {
      const count = Math.min(blocks.length - first, perBatch - (this.pending?.reserved ?? 0));
      // One scatter writes its blocks in no set order: a block imported again goes in a later one.
      if (blocks.slice(first, first + count).some((block) => this.pending?.unscattered.has(block))) {
        this.scatterImports();
        continue;
      }
      const pending = (this.pending ??= {
        packed: this.runtime.allocate([(perBatch * this.bytesPerBlock) / 4], "u32"),
        blocks: [],
        unscattered: new Set(),
        reserved: 0,
        scattered: 0,
        uploading: false,
      });
      const slot = pending.reserved;
      pending.reserved += count;
      pending.uploading = true;
      try {
        await this.runtime.uploadBulk(
          pending.packed,
          slot * this.bytesPerBlock,
          bytes.subarray(first * this.bytesPerBlock, (first + count) * this.bytesPerBlock),
        );
        for (const block of blocks.slice(first, first + count)) {
          pending.blocks.push(block);
          pending.unscattered.add(block);
        }
      } catch (error) {
        // The slots of the failed upload are unusable; what arrived before it still goes in.
        pending.uploading = false;
        pending.reserved = pending.blocks.length;
        this.releaseIfDetached(pending);
        this.scatterImports();
        throw error;
      }
      pending.uploading = false;
      if (this.releaseIfDetached(pending)) throw new Error("KV cache: disposed while importing");
      first += count;
      // A full packed buffer is scattered (and given back) now; the next import starts another.
      if (pending.reserved === perBatch) this.scatterImports();
    }
  }

  /** Gives back a packed buffer that dispose() left to its upload; true when it did. */
  private releaseIfDetached(pending: PendingImports): boolean {
    if (this.pending === pending) return false;
    this.runtime.release(pending.packed);
    return true;
  }

  /** Blocks in one batch, at most: as many as one packed buffer can bind (64 MiB at most). */
  private get blocksPerBatch(): number {
    if (this.batchBlocksForTests) return this.batchBlocksForTests;
    const limit = Math.min(BLOCK_BATCH_BYTES, this.runtime.maxBindingBytes);
    return Math.max(1, Math.floor(limit / this.bytesPerBlock));
  }

  /** Runs of blocks small enough for one packed buffer to bind. */
  private async inBatches(
    blocks: readonly number[],
    each: (batch: readonly number[], first: number) => Promise<void>,
  ): Promise<void> {
    const perBatch = this.blocksPerBatch;
    for (let first = 0; first < blocks.length; first += perBatch)
      await each(blocks.slice(first, first + perBatch), first);
  }

  /**
   * A batch's ids and a packed buffer, from the pool, given back once `use` is done: not before,
   * since a bulk transfer copies out of (or into) the packed buffer as its staging frees up. Both are
   * of the largest batch's size whatever this batch's, and bound whole (moveBlocks): a reload's
   * chunks come in many sizes, and buffers or views of a new size meant new bind groups for every
   * layer, which made the first reloads of each size slower (the first of three 36 MB reloads on an
   * H200 imported in 21–33 ms, the third in 9).
   */
  private async withPacked(
    blocks: readonly number[],
    use: (ids: GpuTensor, packed: GpuTensor) => Promise<void>,
  ): Promise<void> {
    const ids = this.runtime.allocate([this.blocksPerBatch], "u32");
    const packed = this.runtime.allocate([(this.blocksPerBatch * this.bytesPerBlock) / 4], "u32");
    try {
      // runtime.upload submits recorded work first where the pooled buffer is still read by it.
      this.runtime.upload(ids, Uint32Array.from(blocks));
      await use(ids, packed);
    } finally {
      this.runtime.release(ids);
      this.runtime.release(packed);
    }
  }

  /**
   * One dispatch per layer of kernels/kv_cache_blocks.wgsl between the cache and `packed`: blocks
   * ids[0…count) and packed slots firstSlot…firstSlot + count.
   */
  private moveBlocks(
    entryPoint: "import_blocks" | "export_blocks",
    ids: GpuTensor,
    packed: GpuTensor,
    firstSlot: number,
    count: number,
  ) {
    for (let layer = 0; layer < this.layers; layer++) {
      this.runtime.dispatch({
        file: "kv_cache_blocks.wgsl",
        entryPoint,
        params: new Params().u32(count).u32(this.blockWords).u32(this.layers).u32(layer).u32(firstSlot),
        // The pooled buffers whole, so their bind groups serve batches of every size.
        bindings: [ids.buffer, this.keys[layer]!, this.values[layer]!, packed.buffer],
        workgroups: grid1d(count * this.blockWords, 256),
      });
    }
  }
}

/** Most bytes one packed buffer carries. */
const BLOCK_BATCH_BYTES = 64 * 1024 * 1024;
