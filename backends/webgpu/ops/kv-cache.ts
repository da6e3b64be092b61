/**
 * Paged KV-cache storage on the GPU (kernels/kv_cache_write.wgsl, kv_cache_copy.wgsl): one buffer of
 * keys and one of values per layer, so a layer's attention binds two buffers of blockCount blocks
 * each, and the cache as a whole may far exceed one binding (128 MiB on lavapipe, 2 GiB or more on a
 * datacenter GPU). Inside a layer's buffer, blocks come one after another, and inside a block each
 * kv head's tokens are contiguous, so attention reads a head's keys of a block in one run.
 */
import type { KvCache, KvCacheSpec, Tensor } from "../../contract.js";
import { GpuTensor, Params, type GpuRuntime } from "../runtime.js";
import { describeShape, grid1d } from "./grid.js";
import { checkKvBlock, checkKvExport, checkKvImport, checkKvLayer } from "../../kv-checks.js";
import { KvBlockTransfers } from "./kv-block-transfers.js";

/** Word layout of one layer's key (or value) buffer; kv_cache_write.wgsl's header draws it. */
export interface KvLayout {
  /** Kernel constant: 0 f32, 1 f16, 2 quantized. */
  storageCode: 0 | 1 | 2;
  bits: 4 | 8;
  valuesPerWord: number;
  /** u32 words of one token's row of one kv head. */
  rowWords: number;
  /** Scale/bias words per row: headDim / 64 when quantized, else 0. */
  groupWords: number;
  /** Words of one block of one layer's keys (or values), all kv heads. */
  blockWords: number;
}

export function kvLayout(spec: KvCacheSpec): KvLayout {
  const { storage, headDim, blockSize, kvHeads } = spec;
  let layout: Omit<KvLayout, "blockWords">;
  if (storage.kind === "float") {
    const f16 = storage.dtype === "f16";
    if (f16 && headDim % 2 !== 0) throw new Error(`KV cache: f16 storage needs an even headDim, got ${headDim}`);
    layout = {
      storageCode: f16 ? 1 : 0,
      bits: 8,
      valuesPerWord: f16 ? 2 : 1,
      rowWords: f16 ? headDim / 2 : headDim,
      groupWords: 0,
    };
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
    const valuesPerWord = 32 / storage.bits;
    layout = {
      storageCode: 2,
      bits: storage.bits,
      valuesPerWord,
      rowWords: headDim / valuesPerWord,
      groupWords: headDim / 64,
    };
  }
  return { ...layout, blockWords: kvHeads * blockSize * (layout.rowWords + layout.groupWords) };
}

export function kernelConstants(spec: KvCacheSpec, layout: KvLayout): Record<string, number> {
  return { STORAGE: layout.storageCode, BITS: layout.bits, HEAD_DIM: spec.headDim };
}

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`KV cache: ${name} must be a positive integer, got ${value}`);
}

export class WebGpuKvCache implements KvCache {
  readonly layout: KvLayout;
  readonly bytesPerBlock: number;
  /** Per layer: the buffers attention binds, as u32 tensors of the whole layer (through `layer`). */
  private readonly keys: GpuTensor[] = [];
  private readonly values: GpuTensor[] = [];
  private readonly blockBytes: number;
  private readonly totalBytes: number;
  private disposed = false;
  /** Imports and exports of whole blocks (a reload's, an eviction's). */
  readonly transfers: KvBlockTransfers;

  constructor(
    private readonly runtime: GpuRuntime,
    readonly spec: KvCacheSpec,
  ) {
    for (const name of ["layers", "kvHeads", "headDim", "blockSize", "blockCount"] as const) {
      requirePositiveInteger(name, spec[name]);
    }
    this.layout = kvLayout(spec);
    this.blockBytes = this.layout.blockWords * 4;
    this.bytesPerBlock = this.blockBytes * 2 * spec.layers;
    const layerBytes = this.blockBytes * spec.blockCount;
    const limit = Math.min(runtime.maxBindingBytes, runtime.gpu.limits.maxBufferSize);
    if (layerBytes > limit) {
      throw new Error(
        `KV cache: ${spec.blockCount} blocks take ${layerBytes} bytes per layer for keys, more than one storage ` +
          `binding holds on this device (${limit}); at most ${Math.floor(limit / this.blockBytes)} blocks fit`,
      );
    }
    for (let layer = 0; layer < spec.layers; layer++) {
      this.keys.push(this.createLayerBuffer(layerBytes));
      this.values.push(this.createLayerBuffer(layerBytes));
    }
    this.totalBytes = layerBytes * 2 * spec.layers;
    runtime.bytes.kvCache += this.totalBytes;
    this.transfers = new KvBlockTransfers(runtime, spec.layers, this.layout.blockWords, this.keys, this.values);
    // Reloads import through them, and through the import kernel, evictions through the export one:
    // made now, so that the first reload or eviction after a server starts does not compile.
    runtime.bulk.prepareUploads();
    for (const entryPoint of ["import_blocks", "export_blocks"])
      runtime.kernels.kernel("kv_cache_blocks.wgsl", entryPoint);
  }

  /**
   * One layer's key and value buffers, for work that reads or writes them (attention): imports that
   * have resolved are scattered into place first, so that work sees them.
   */
  layer(layer: number): { keys: GpuTensor; values: GpuTensor } {
    this.requireLive();
    this.requireLayer("layer", layer);
    this.transfers.scatterImports();
    return { keys: this.keys[layer]!, values: this.values[layer]! };
  }

  private createLayerBuffer(bytes: number): GpuTensor {
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const buffer = this.runtime.device.createBuffer({ size: bytes, usage });
    return new GpuTensor([bytes / 4], "u32", buffer, 0, "view");
  }

  write(layer: number, keys: Tensor, values: Tensor, slots: Tensor): void {
    this.requireLive();
    this.requireLayer("write", layer);
    const { kvHeads, headDim, blockSize, blockCount } = this.spec;
    const tokens = keys.shape[0] ?? 0;
    const expected = [tokens, kvHeads, headDim];
    for (const [name, tensor] of [
      ["keys", keys],
      ["values", values],
    ] as const) {
      if (tensor.dtype !== "f32" || describeShape(tensor.shape) !== describeShape(expected)) {
        throw new Error(
          `KV cache write: ${name} must be f32 ${describeShape(expected)}, got ${tensor.dtype} ${describeShape(tensor.shape)}`,
        );
      }
    }
    if (slots.dtype !== "u32" || describeShape(slots.shape) !== describeShape([tokens])) {
      throw new Error(
        `KV cache write: slots must be u32 [${tokens}], got ${slots.dtype} ${describeShape(slots.shape)}`,
      );
    }
    if (tokens === 0) return;
    this.transfers.scatterImports();
    const [x, y] = grid1d(tokens, 1);
    this.runtime.dispatch({
      file: "kv_cache_write.wgsl",
      entryPoint: "write",
      constants: kernelConstants(this.spec, this.layout),
      params: new Params()
        .u32(tokens)
        .u32(kvHeads)
        .u32(blockSize)
        .u32(blockCount * blockSize),
      bindings: [own(keys), own(values), own(slots), this.keys[layer]!, this.values[layer]!],
      workgroups: [x, y, kvHeads],
    });
  }

  copyBlocks(pairs: readonly (readonly [source: number, destination: number])[]): void {
    this.requireLive();
    this.transfers.scatterImports();
    for (const [source, destination] of pairs) {
      this.requireBlock("copyBlocks", source);
      this.requireBlock("copyBlocks", destination);
      if (source === destination) throw new Error(`KV cache copyBlocks: block ${source} copied onto itself`);
      for (let layer = 0; layer < this.spec.layers; layer++) {
        this.runtime.dispatch({
          file: "kv_cache_copy.wgsl",
          entryPoint: "copy_block",
          params: new Params().u32(this.layout.blockWords).u32(source).u32(destination),
          bindings: [this.keys[layer]!, this.values[layer]!],
          workgroups: [Math.ceil(this.layout.blockWords / 256)],
        });
      }
    }
  }

  /** Layer 0 keys, layer 0 values, layer 1 keys, …: each the block's words as stored. */
  async exportBlock(block: number): Promise<Uint8Array> {
    this.requireBlock("exportBlock", block);
    return this.exportBlocks([block]);
  }

  /** See KvBlockTransfers.exportBlocks. */
  async exportBlocks(blocks: readonly number[], into?: Uint8Array): Promise<Uint8Array> {
    this.requireLive();
    const out = checkKvExport(this.spec, this.bytesPerBlock, blocks, into);
    await this.transfers.exportBlocks(blocks, out);
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
    this.transfers.scatterImports(); // an earlier import of the same block must not land after this one
    this.upload([block], bytes);
  }

  /** See KvBlockTransfers.importBlocks. */
  async importBlocks(blocks: readonly number[], bytes: Uint8Array): Promise<void> {
    this.requireLive();
    checkKvImport(this.spec, this.bytesPerBlock, blocks, bytes);
    // Called before the first await: imports queue in call order.
    return this.transfers.importBlocks(blocks, bytes);
  }

  /** blocks[i] ← bytes[i·bytesPerBlock …], one writeBuffer per layer part of each block. */
  private upload(blocks: readonly number[], bytes: Uint8Array): void {
    // queue.writeBuffer runs ahead of work still being recorded: submit that work first so it sees
    // the blocks as they were, and everything recorded from here on sees the imported bytes.
    this.runtime.submit();
    const words = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    blocks.forEach((block, index) => {
      const start = words.byteOffset + index * this.bytesPerBlock;
      this.forEachPart((destination, at) => {
        this.runtime.device.queue.writeBuffer(
          destination.buffer,
          block * this.blockBytes,
          words.buffer,
          start + at,
          this.blockBytes,
        );
      });
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.transfers.dispose();
    this.runtime.bytes.kvCache -= this.totalBytes;
    const buffers = [...this.keys, ...this.values].map((tensor) => tensor.buffer);
    this.runtime.submit();
    void this.runtime.device.queue.onSubmittedWorkDone().then(() => {
      for (const buffer of buffers) buffer.destroy();
    });
  }

  /** Each layer's key then value buffer, with where its part of a block sits in exported bytes. */
  private forEachPart(visit: (buffer: GpuTensor, byteOffsetInBlock: number) => void): void {
    for (let layer = 0; layer < this.spec.layers; layer++) {
      visit(this.keys[layer]!, 2 * layer * this.blockBytes);
      visit(this.values[layer]!, (2 * layer + 1) * this.blockBytes);
    }
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

function own(tensor: Tensor): GpuTensor {
  if (!(tensor instanceof GpuTensor)) throw new Error("webgpu: tensor belongs to another backend");
  if (tensor.freed) throw new Error(`webgpu: tensor ${describeShape(tensor.shape)} was used after free()`);
  return tensor;
}
