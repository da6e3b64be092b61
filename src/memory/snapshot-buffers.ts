/**
 * Host memory that agents on their way to disk are read back into, kept for the next eviction.
 *
 * A snapshot is hundreds of MiB to GiBs. Read into new memory every time, the host first faults its
 * pages in: 1.3–1.4 GB/s on the H200's host, against 6 GB/s into memory used before
 * (bench/reload.ts, "GPU → host"). Then it frees them again inside a garbage collection on the main
 * thread: scavenges of 50–107 ms were traced there, in the middle of other agents' requests. Buffers
 * kept here skip both; beyond `keepBytes` they are left to the collector as before.
 */
export class SnapshotBuffers {
  private readonly spare: Uint8Array[] = [];

  constructor(
    /** Size of every buffer: a whole number of blocks (one exportBlocks call fills one). */
    readonly bufferBytes: number,
    /** Most bytes kept between snapshots. */
    readonly keepBytes: number,
  ) {}

  /**
   * A buffer of at least `bytes` (at most bufferBytes): a kept one when there is one, else a new one of
   * exactly `bytes`, so a small agent's eviction never holds a whole batch-sized buffer for a few MiB.
   */
  take(bytes: number): Uint8Array {
    if (bytes > this.bufferBytes) throw new Error(`snapshot buffers hold ${this.bufferBytes} bytes, asked ${bytes}`);
    // allocUnsafeSlow: a buffer of its own (not a slice of Node's pool) and not zeroed: it is overwritten.
    return this.spare.pop() ?? new Uint8Array(Buffer.allocUnsafeSlow(bytes).buffer);
  }

  /**
   * Buffers whose snapshot is written (or failed): full-size ones are kept while there is room; the
   * rest (a small agent's, or beyond keepBytes) are left to the collector.
   */
  give(buffers: readonly Uint8Array[]): void {
    for (const buffer of buffers) {
      if (buffer.byteLength !== this.bufferBytes) continue;
      if ((this.spare.length + 1) * this.bufferBytes > this.keepBytes) return;
      this.spare.push(buffer);
    }
  }

  /** Bytes kept now. */
  get keptBytes(): number {
    return this.spare.length * this.bufferBytes;
  }
}
