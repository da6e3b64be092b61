/**
 * Paged KV storage and the prepared attention batch, as handles to their native halves
 * (native/src/kv_cache.cpp): each layer's keys and values are token rows [blockCount · blockSize,
 * kvHeads, …], f32, f16 or MLX's affine layout (uint32-packed values, f16 scales and biases per 64).
 * Exported bytes are, per layer, the block's key parts then its value parts, each as stored.
 */
import type { AttentionSequence, KvCache, KvCacheSpec, PreparedAttentionBatch, Tensor } from "../contract.js";
import type { Handle, MlxAddon } from "./addon.js";
import { describeShape, type MlxTensor } from "./tensor.js";
import {
  checkBlockTables,
  checkKvBlock,
  checkKvExport,
  checkKvImport,
  checkKvLayer,
  checkQueryRows,
} from "../kv-checks.js";

const STORAGE_CODES = { f32: 0, f16: 1, quantized: 2 } as const;

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`KV cache: ${name} must be a positive integer, got ${value}`);
}

/** Bytes of one block, all layers, keys and values; checks the storage is one MLX can hold. */
export function kvBlockBytes(spec: KvCacheSpec): number {
  for (const name of ["layers", "kvHeads", "headDim", "blockSize", "blockCount"] as const) {
    requirePositiveInteger(name, spec[name]);
  }
  const { storage, headDim, blockSize, kvHeads, layers } = spec;
  let rowBytes: number;
  if (storage.kind === "float") {
    rowBytes = headDim * (storage.dtype === "f16" ? 2 : 4);
  } else {
    if (storage.bits !== 4 && storage.bits !== 8)
      throw new Error(`KV cache: quantized storage takes 4 or 8 bits, got ${String(storage.bits)}`);
    if (storage.groupSize !== 64)
      throw new Error(`KV cache: quantized storage uses group size 64, got ${String(storage.groupSize)}`);
    if (headDim % 64 !== 0) {
      throw new Error(
        `KV cache: quantized storage groups 64 values along headDim, which must be a multiple of 64 (got ${headDim}); use float storage`,
      );
    }
    rowBytes = (headDim * storage.bits) / 8 + (headDim / 64) * 2 * 2;
  }
  return 2 * layers * blockSize * kvHeads * rowBytes;
}

export class MlxKvCache implements KvCache {
  readonly bytesPerBlock: number;
  readonly handle: Handle;
  private disposed = false;

  constructor(
    private readonly addon: MlxAddon,
    readonly spec: KvCacheSpec,
    private readonly own: (tensor: Tensor) => MlxTensor,
    private readonly onDispose: () => void,
  ) {
    this.bytesPerBlock = kvBlockBytes(spec);
    const { storage } = spec;
    this.handle = addon.kvCreate([
      spec.layers,
      spec.kvHeads,
      spec.headDim,
      spec.blockSize,
      spec.blockCount,
      storage.kind === "float" ? STORAGE_CODES[storage.dtype] : STORAGE_CODES.quantized,
      storage.kind === "quantized" ? storage.bits : 0,
    ]);
  }

  get totalBytes(): number {
    return this.bytesPerBlock * this.spec.blockCount;
  }

  write(layer: number, keys: Tensor, values: Tensor, slots: Tensor): void {
    this.requireLive();
    this.requireLayer("write", layer);
    const { kvHeads, headDim } = this.spec;
    const tokens = keys.shape[0] ?? 0;
    const expected = describeShape([tokens, kvHeads, headDim]);
    for (const [name, tensor] of [
      ["keys", keys],
      ["values", values],
    ] as const) {
      if (tensor.dtype !== "f32" || describeShape(tensor.shape) !== expected) {
        throw new Error(
          `KV cache write: ${name} must be f32 ${expected}, got ${tensor.dtype} ${describeShape(tensor.shape)}`,
        );
      }
    }
    if (slots.dtype !== "u32" || describeShape(slots.shape) !== describeShape([tokens])) {
      throw new Error(
        `KV cache write: slots must be u32 [${tokens}], got ${slots.dtype} ${describeShape(slots.shape)}`,
      );
    }
    if (tokens === 0) return;
    this.addon.kvWrite(this.handle, layer, this.own(keys).handle, this.own(values).handle, this.own(slots).handle);
  }

  copyBlocks(pairs: readonly (readonly [source: number, destination: number])[]): void {
    this.requireLive();
    for (const [source, destination] of pairs) {
      this.requireBlock("copyBlocks", source);
      this.requireBlock("copyBlocks", destination);
      if (source === destination) throw new Error(`KV cache copyBlocks: block ${source} copied onto itself`);
    }
    if (pairs.length > 0) this.addon.kvCopy(this.handle, pairs.flat());
  }

  async exportBlock(block: number): Promise<Uint8Array> {
    this.requireLive();
    this.requireBlock("exportBlock", block);
    return new Uint8Array(await this.addon.kvExport(this.handle, block));
  }

  async exportBlocks(blocks: readonly number[], into?: Uint8Array): Promise<Uint8Array> {
    this.requireLive();
    const out = checkKvExport(this.spec, this.bytesPerBlock, blocks, into);
    const parts = await Promise.all(blocks.map((block) => this.addon.kvExport(this.handle, block)));
    parts.forEach((part, i) => out.set(new Uint8Array(part), i * this.bytesPerBlock));
    return out;
  }

  importBlock(block: number, bytes: Uint8Array): void {
    this.requireLive();
    this.requireBlock("importBlock", block);
    if (bytes.byteLength !== this.bytesPerBlock) {
      throw new Error(
        `KV cache importBlock: got ${bytes.byteLength} bytes, a block of this cache takes ${this.bytesPerBlock}`,
      );
    }
    this.addon.kvImport(this.handle, block, bytes.buffer instanceof SharedArrayBuffer ? bytes.slice() : bytes);
  }

  // The addon copies the bytes before it returns: nothing to wait for, but errors still reject.
  // eslint-disable-next-line @typescript-eslint/require-await
  async importBlocks(blocks: readonly number[], bytes: Uint8Array): Promise<void> {
    this.requireLive();
    checkKvImport(this.spec, this.bytesPerBlock, blocks, bytes);
    // N-API hands the addon plain ArrayBuffers only: shared memory (a reload's reader ring) is copied out.
    const own = bytes.buffer instanceof SharedArrayBuffer ? bytes.slice() : bytes;
    blocks.forEach((block, i) => {
      this.addon.kvImport(this.handle, block, own.subarray(i * this.bytesPerBlock, (i + 1) * this.bytesPerBlock));
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.addon.kvFree(this.handle);
    this.onDispose();
  }

  get live(): boolean {
    return !this.disposed;
  }

  private requireLive(): void {
    if (this.disposed) throw new Error("KV cache: used after dispose()");
  }

  private requireLayer(operation: string, layer: number): void {
    checkKvLayer(this.spec, operation, layer);
  }

  private requireBlock(operation: string, block: number): void {
    checkKvBlock(this.spec, operation, block);
  }
}

export class MlxAttentionBatch implements PreparedAttentionBatch {
  readonly totalQueries: number;
  readonly handle: Handle;
  /** Caches whose blockCount/blockSize this batch's tables were checked against. */
  private readonly checkedCaches = new WeakSet<KvCache>();
  private disposed = false;

  constructor(
    private readonly addon: MlxAddon,
    readonly sequences: readonly AttentionSequence[],
    private readonly onDispose: () => void,
  ) {
    this.totalQueries = checkQueryRows(sequences);
    const words: number[] = [sequences.length];
    for (const { queryStart, queryLength, contextLength, blockTable } of sequences) {
      words.push(queryStart, queryLength, contextLength, blockTable.length, ...blockTable);
    }
    this.handle = addon.attentionPrepare(Int32Array.from(words));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.addon.attentionFree(this.handle);
    this.onDispose();
  }

  get live(): boolean {
    return !this.disposed;
  }

  /** Every block a sequence's context needs is in its table and inside the cache. */
  checkBlockTables(cache: MlxKvCache): void {
    if (this.checkedCaches.has(cache)) return;
    checkBlockTables(this.sequences, cache.spec);
    this.checkedCaches.add(cache);
  }
}
