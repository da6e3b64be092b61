/**
 * Host memory that agents on their way to disk are read back into, kept for the next eviction.
 *
 * A snapshot is hundreds of MiB to GiBs. Read into new memory every time, the host first faults its
 * pages in: 1.3–1.4 GB/s on the H200's host, against 6 GB/s into memory used before
 * (bench/reload.ts, "GPU → host"). Then it frees them again inside a garbage collection on the main
 * thread: scavenges of 50–107 ms were traced there, in the middle of other agents' requests. Buffers
 * kept here skip both; beyond `keepBytes` a snapshot gets memory that is left to the collector.
 *
 * That memory comes in a few large allocations, cut into batch-sized views: allocated one batch (64
 * MiB) at a time, each allocation made V8 run a full collection for "external memory pressure" — 49 of
 * them, 0.7 s of main-thread pauses, in the eviction of one 4.3 GB agent (`node --trace-gc`, 8B model
 * at 32K on an H200, bench/results/agent-memory-h200-8b-gc.json).
 */
export class SnapshotBuffers {
  private readonly spare: Uint8Array[] = [];
  /** Kept-size buffers handed out and not given back yet: they count against keepBytes too. */
  private outstanding = 0;
  /** Views into the large allocations beyond keepBytes: never kept. */
  private readonly unkept = new WeakSet<Uint8Array>();

  constructor(
    /** Size of every buffer: a whole number of blocks (one exportBlocks call fills one). */
    readonly bufferBytes: number,
    /** Most bytes kept between snapshots. */
    readonly keepBytes: number,
    /** Bytes of each large allocation beyond keepBytes (rounded down to whole buffers, at least one). */
    readonly overflowChunkBytes = OVERFLOW_CHUNK_BYTES,
  ) {}

  /**
   * A buffer of at least `bytes` (at most bufferBytes): a kept one when there is one, else a new one of
   * exactly `bytes`, so a small agent's eviction never holds a whole batch-sized buffer for a few MiB.
   */
  take(bytes: number): Uint8Array {
    if (bytes > this.bufferBytes) throw new Error(`snapshot buffers hold ${this.bufferBytes} bytes, asked ${bytes}`);
    const buffer = this.spare.pop() ?? uninitialized(bytes);
    if (buffer.byteLength === this.bufferBytes) this.outstanding++;
    return buffer;
  }

  /**
   * Buffers for a snapshot's batches of the given sizes (each at most bufferBytes), in order: kept ones
   * first, new ones while everything handed out and kept stays within keepBytes, and beyond that views
   * into allocations of overflowChunkBytes, which `give` leaves to the collector.
   */
  takeAll(sizes: readonly number[]): Uint8Array[] {
    const buffers: Uint8Array[] = [];
    let next = 0;
    for (; next < sizes.length; next++) {
      const fits = this.spare.length > 0 || (this.outstanding + 1) * this.bufferBytes <= this.keepBytes;
      if (!fits) break;
      buffers.push(this.take(sizes[next]!));
    }
    const perChunk = Math.max(1, Math.floor(this.overflowChunkBytes / this.bufferBytes));
    while (next < sizes.length) {
      const group = sizes.slice(next, next + perChunk);
      next += group.length;
      const chunk = uninitialized(group.reduce((sum, size) => sum + size, 0));
      let at = 0;
      for (const size of group) {
        if (size > this.bufferBytes) throw new Error(`snapshot buffers hold ${this.bufferBytes} bytes, asked ${size}`);
        const view = chunk.subarray(at, at + size);
        this.unkept.add(view);
        buffers.push(view);
        at += size;
      }
    }
    return buffers;
  }

  /**
   * Buffers whose snapshot is written (or failed): full-size ones are kept while there is room; the
   * rest (a small agent's, views beyond keepBytes, or beyond room) are left to the collector.
   */
  give(buffers: readonly Uint8Array[]): void {
    for (const buffer of buffers) {
      if (this.unkept.has(buffer) || buffer.byteLength !== this.bufferBytes) continue;
      this.outstanding = Math.max(0, this.outstanding - 1);
      if ((this.spare.length + 1) * this.bufferBytes <= this.keepBytes) this.spare.push(buffer);
    }
  }

  /** Bytes kept now. */
  get keptBytes(): number {
    return this.spare.length * this.bufferBytes;
  }
}

/** Each allocation beyond keepBytes: 1 GiB (an 8B model's 32K agent takes four). */
const OVERFLOW_CHUNK_BYTES = 2 ** 30;

/** allocUnsafeSlow: memory of its own (not a slice of Node's pool), not zeroed: it is overwritten. */
function uninitialized(bytes: number): Uint8Array {
  return new Uint8Array(Buffer.allocUnsafeSlow(bytes).buffer, 0, bytes);
}
