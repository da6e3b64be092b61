/**
 * Staging memory the GPU runtime keeps for bulk transfers (a reload's KV blocks in, an eviction's
 * out), in both directions, and the transfers through it (BulkTransfers, at the end).
 *
 * UploadRing: a few MAP_WRITE buffers that carry host bytes to the GPU and are mapped again once the GPU has
 * copied out of them. Why not queue.writeBuffer: on an H200 host it moves 2.4–2.9 GB/s whatever the
 * piece size, as does a new mappedAtCreation buffer per piece; both fill staging memory the host has
 * not touched before. The same copy into mapped buffers that are reused runs at ~14 GB/s
 * (bench/reload.ts, "host → GPU"), so a warm reload is no longer held to a third of `dd`.
 */
export class UploadRing {
  private readonly slots: { buffer: GPUBuffer; ready: Promise<void> }[];
  private next = 0;
  private disposed = false;

  constructor(
    private readonly device: GPUDevice,
    readonly slotBytes: number,
    slotCount: number,
  ) {
    this.slots = Array.from({ length: slotCount }, () => ({
      buffer: device.createBuffer({
        size: slotBytes,
        usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
      }),
      ready: Promise.resolve(),
    }));
  }

  /**
   * Copy `bytes` (at most slotBytes, whole 4-byte words) into the next slot once it is mapped again,
   * unmap it, and call `send`, which records the slot's copy out and submits it. The slot is then
   * mapped again, which completes once the GPU has done that copy. Slots are handed out in call order,
   * so concurrent callers never share one; this resolves when `bytes` may be reused.
   */
  async use(bytes: Uint8Array, send: (buffer: GPUBuffer) => void): Promise<void> {
    if (this.disposed) throw new Error("webgpu: upload ring used after dispose()");
    if (bytes.byteLength > this.slotBytes || bytes.byteLength % 4 !== 0) {
      throw new Error(`webgpu: upload ring takes whole words up to ${this.slotBytes} bytes, got ${bytes.byteLength}`);
    }
    const slot = this.slots[this.next]!;
    this.next = (this.next + 1) % this.slots.length;
    const previous = slot.ready;
    let unmapped = false;
    let settle!: (remapped: Promise<void>) => void;
    slot.ready = new Promise<void>((resolve) => (settle = resolve));
    // A slot whose remapping failed (device lost, or disposed) fails whoever waits for it next; the
    // promise itself must not count as an unhandled rejection while nobody waits.
    slot.ready.catch(() => undefined);
    try {
      await previous;
      if (bytes.byteLength > 0) new Uint8Array(slot.buffer.getMappedRange(0, bytes.byteLength)).set(bytes);
      slot.buffer.unmap();
      unmapped = true;
      send(slot.buffer);
    } finally {
      // Mapping again waits for the GPU to finish the copy just submitted. A slot still mapped (the
      // copy into it failed) is ready as it is.
      settle(unmapped ? slot.buffer.mapAsync(GPUMapMode.WRITE) : previous);
    }
  }

  dispose(): void {
    this.disposed = true;
    for (const slot of this.slots) slot.buffer.destroy();
  }
}

/**
 * A few MAP_READ buffers that carry GPU bytes back to the host, reused for the same reason as
 * UploadRing: a new mappable buffer per piece is host memory met for the first time, and Dawn frees
 * thousands of them later, slowing whatever runs then (an eviction's readback once slowed the reload
 * after it fourfold).
 */
export class DownloadRing {
  private readonly slots: { buffer: GPUBuffer; ready: Promise<void> }[];
  private next = 0;
  private disposed = false;

  constructor(
    device: GPUDevice,
    readonly slotBytes: number,
    slotCount: number,
  ) {
    this.slots = Array.from({ length: slotCount }, () => ({
      buffer: device.createBuffer({ size: slotBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
      ready: Promise.resolve(),
    }));
  }

  /**
   * Once the next slot is free, `send` records a copy of `byteLength` bytes (whole words, at most
   * slotBytes) into it and submits; the slot is then mapped, its bytes handed to `take` (valid only
   * during the call) and unmapped. Slots are handed out in call order, so several pieces can be in
   * flight at once without sharing one.
   */
  async use(byteLength: number, send: (buffer: GPUBuffer) => void, take: (bytes: Uint8Array) => void): Promise<void> {
    if (this.disposed) throw new Error("webgpu: download ring used after dispose()");
    if (byteLength > this.slotBytes || byteLength % 4 !== 0) {
      throw new Error(`webgpu: download ring takes whole words up to ${this.slotBytes} bytes, got ${byteLength}`);
    }
    const slot = this.slots[this.next]!;
    this.next = (this.next + 1) % this.slots.length;
    const previous = slot.ready;
    let settle!: () => void;
    slot.ready = new Promise<void>((resolve) => (settle = resolve));
    try {
      await previous;
      if (byteLength === 0) return;
      send(slot.buffer);
      await slot.buffer.mapAsync(GPUMapMode.READ, 0, byteLength);
      try {
        take(new Uint8Array(slot.buffer.getMappedRange(0, byteLength)));
      } finally {
        slot.buffer.unmap();
      }
    } finally {
      settle();
    }
  }

  dispose(): void {
    this.disposed = true;
    for (const slot of this.slots) slot.buffer.destroy();
  }
}

/** Records a copy between two buffers after the work recorded so far, and submits it. */
export type CopyAndSubmit = (
  source: GPUBuffer,
  sourceOffset: number,
  destination: GPUBuffer,
  destinationOffset: number,
  bytes: number,
) => void;

/**
 * The runtime's bulk transfers: uploads through an UploadRing of four 8 MiB buffers, which keeps the
 * copies of three pieces in flight while the fourth is filled (14.6 GB/s on the H200's host), and
 * downloads through a DownloadRing of the same shape, created on the first download (an eviction).
 */
export class BulkTransfers {
  private uploads: UploadRing | null = null;
  private downloads: DownloadRing | null = null;

  constructor(
    private readonly device: GPUDevice,
    private readonly copyAndSubmit: CopyAndSubmit,
  ) {}

  /**
   * Create the upload buffers now (32 MiB of host memory the driver maps and clears, ~20 ms on the
   * H200's host), so the first bulk upload, a reload on a user's request, does not wait for it.
   */
  prepareUploads(): UploadRing {
    this.uploads ??= new UploadRing(this.device, SLOT_BYTES, SLOTS);
    return this.uploads;
  }

  /** `data` into `destination` at `offset`, piece by piece; resolves when `data` may be reused. */
  async upload(destination: GPUBuffer, offset: number, data: Uint8Array): Promise<void> {
    const ring = this.prepareUploads();
    for (let at = 0; at < data.byteLength; at += ring.slotBytes) {
      const piece = data.subarray(at, Math.min(at + ring.slotBytes, data.byteLength));
      await ring.use(piece, (staging) => this.copyAndSubmit(staging, 0, destination, offset + at, piece.byteLength));
    }
  }

  /** `into.byteLength` bytes of `source` from `offset` into `into`, several pieces in flight at once. */
  async download(source: GPUBuffer, offset: number, into: Uint8Array): Promise<void> {
    this.downloads ??= new DownloadRing(this.device, SLOT_BYTES, SLOTS);
    const ring = this.downloads;
    const pieces: Promise<void>[] = [];
    for (let at = 0; at < into.byteLength; at += ring.slotBytes) {
      const length = Math.min(ring.slotBytes, into.byteLength - at);
      const piece = ring.use(
        length,
        (staging) => this.copyAndSubmit(source, offset + at, staging, 0, length),
        (bytes) => into.set(bytes, at),
      );
      piece.catch(() => undefined); // awaited below; this keeps a failed piece from being "unhandled" meanwhile
      pieces.push(piece);
    }
    await Promise.all(pieces);
  }

  /** For tests: uploads go through `slotCount` mapped buffers of `slotBytes`, so small ones take many. */
  useUploadRing(slotBytes: number, slotCount: number): void {
    this.uploads?.dispose();
    this.uploads = new UploadRing(this.device, slotBytes, slotCount);
  }

  /** For tests: downloads go through `slotCount` mapped buffers of `slotBytes`. */
  useDownloadRing(slotBytes: number, slotCount: number): void {
    this.downloads?.dispose();
    this.downloads = new DownloadRing(this.device, slotBytes, slotCount);
  }

  dispose(): void {
    this.uploads?.dispose();
    this.downloads?.dispose();
  }
}

const SLOT_BYTES = 8 * 2 ** 20;
const SLOTS = 4;
