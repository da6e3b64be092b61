/**
 * The WebGPU backend over Dawn: the contract's methods, each delegating to the op module of its
 * kernel family under ops/. `supportedOps` is the union of what those modules implement.
 */
import {
  DTYPE_BYTES,
  type AttentionOptions,
  type AttentionSequence,
  type Backend,
  type DType,
  type HostArray,
  type KvCache,
  type KvCacheSpec,
  type Matrix,
  type MemoryReport,
  type OpName,
  type PreparedAttentionBatch,
  type RopeOptions,
  type Tensor,
} from "../contract.js";
import { acquireDevice } from "./device.js";
import * as attentionOps from "./ops/attention.js";
import * as elementwise from "./ops/elementwise.js";
import { describeShape, sizeOf } from "./ops/grid.js";
import * as layout from "./ops/layout.js";
import * as matmulOps from "./ops/matmul.js";
import * as norm from "./ops/norm.js";
import * as ropeOps from "./ops/rope.js";
import * as sampling from "./ops/sampling.js";
import { GpuRuntime, GpuTensor } from "./runtime.js";

const ELEMENTWISE_OPS: OpName[] = ["add", "mul", "scale", "silu", "gelu_tanh"];

export class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  readonly supportedOps: ReadonlySet<OpName> = new Set([
    ...ELEMENTWISE_OPS,
    ...norm.IMPLEMENTED_OPS,
    ...ropeOps.IMPLEMENTED_OPS,
    ...matmulOps.IMPLEMENTED_OPS,
    ...sampling.IMPLEMENTED_OPS,
    ...layout.IMPLEMENTED_OPS,
    ...attentionOps.IMPLEMENTED_OPS,
  ]);
  private lostReason: string | null = null;

  private constructor(readonly runtime: GpuRuntime) {}

  /** `dawnFlags`: Dawn's own options, for benchmarks (see acquireDevice). */
  static async create(dawnFlags: readonly string[] = []): Promise<WebGpuBackend> {
    let backend: WebGpuBackend | null = null;
    const device = await acquireDevice((reason) => {
      if (backend) backend.lostReason = reason;
    }, dawnFlags);
    backend = new WebGpuBackend(new GpuRuntime(device));
    return backend;
  }

  get deviceDescription(): string {
    return this.runtime.gpu.adapterDescription;
  }

  get failure(): string | null {
    return this.lostReason;
  }

  upload(
    data: HostArray,
    shape: readonly number[],
    dtype: DType,
    role: "weights" | "activations" = "activations",
  ): Tensor {
    const expectedBytes = sizeOf(shape) * DTYPE_BYTES[dtype];
    if (data.byteLength !== expectedBytes) {
      throw new Error(
        `upload: ${data.byteLength} bytes do not fill a ${dtype} tensor of shape ${describeShape(shape)}`,
      );
    }
    const tensor = this.runtime.allocate(shape, dtype, role);
    // writeBuffer moves whole 4-byte words: pad odd-length 16-bit data.
    const padded = data.byteLength % 4 === 0 ? data : padToWords(data);
    this.runtime.upload(tensor, padded);
    return tensor;
  }

  async read(tensor: Tensor): Promise<Float32Array | Uint32Array | Int32Array> {
    const gpuTensor = this.own(tensor);
    const bytes = await this.runtime.readBytes(gpuTensor);
    switch (gpuTensor.dtype) {
      case "f32":
        return new Float32Array(bytes);
      case "u32":
        return new Uint32Array(bytes);
      case "i32":
        return new Int32Array(bytes);
      case "f16":
        return halfToFloat(new Uint16Array(bytes));
      case "bf16":
        return bfloatToFloat(new Uint16Array(bytes));
    }
  }

  free(tensor: Tensor): void {
    this.runtime.release(this.own(tensor));
  }

  flush(): Promise<void> {
    return this.runtime.finish();
  }

  embedding(table: Matrix, ids: Tensor): Tensor {
    return matmulOps.embedding(this.runtime, table, this.own(ids));
  }
  matmul(x: Tensor, w: Matrix): Tensor {
    return matmulOps.matmul(this.runtime, this.own(x), w);
  }
  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
    return norm.rmsNorm(this.runtime, this.own(x), this.own(weight), eps);
  }
  rope(x: Tensor, positions: Tensor, options: RopeOptions): Tensor {
    return ropeOps.rope(this.runtime, this.own(x), this.own(positions), options);
  }
  geluTanh(x: Tensor): Tensor {
    return elementwise.geluTanh(this.runtime, this.own(x));
  }
  silu(x: Tensor): Tensor {
    return elementwise.silu(this.runtime, this.own(x));
  }
  add(a: Tensor, b: Tensor): Tensor {
    return elementwise.add(this.runtime, this.own(a), this.own(b));
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return elementwise.mul(this.runtime, this.own(a), this.own(b));
  }
  scale(x: Tensor, factor: number): Tensor {
    return elementwise.scale(this.runtime, this.own(x), factor);
  }
  softmax(x: Tensor): Tensor {
    return norm.softmax(this.runtime, this.own(x));
  }
  argmax(x: Tensor): Tensor {
    return sampling.argmax(this.runtime, this.own(x));
  }
  topK(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
    return sampling.topK(this.runtime, this.own(x), k);
  }

  reshape(x: Tensor, shape: readonly number[]): Tensor {
    const source = this.own(x);
    if (sizeOf(shape) !== source.size) {
      throw new Error(
        `reshape: ${describeShape(source.shape)} has ${source.size} elements, ${describeShape(shape)} needs ${sizeOf(shape)}`,
      );
    }
    return new GpuTensor(shape, source.dtype, source.buffer, source.byteOffset, "view");
  }
  slice(x: Tensor, axis: number, start: number, end: number): Tensor {
    return layout.slice(this.runtime, this.own(x), axis, start, end);
  }
  concat(tensors: readonly Tensor[], axis: number): Tensor {
    return layout.concat(
      this.runtime,
      tensors.map((tensor) => this.own(tensor)),
      axis,
    );
  }
  transpose(x: Tensor, permutation: readonly number[]): Tensor {
    return layout.transpose(this.runtime, this.own(x), permutation);
  }

  createKvCache(spec: KvCacheSpec): KvCache {
    return attentionOps.createKvCache(this.runtime, spec);
  }
  prepareAttention(sequences: readonly AttentionSequence[]): PreparedAttentionBatch {
    return attentionOps.prepareAttention(this.runtime, sequences);
  }
  attention(
    q: Tensor,
    cache: KvCache,
    layer: number,
    batch: PreparedAttentionBatch,
    options: AttentionOptions,
  ): Tensor {
    return attentionOps.attention(this.runtime, this.own(q), cache, layer, batch, options);
  }

  memory(): MemoryReport {
    const { weights, activations, kvCache } = this.runtime.bytes;
    return { weightsBytes: weights, kvCacheBytes: kvCache, otherBytes: activations };
  }

  dispose(): void {
    this.runtime.dispose();
  }

  private own(tensor: Tensor): GpuTensor {
    if (!(tensor instanceof GpuTensor)) throw new Error("webgpu: tensor belongs to another backend");
    if (tensor.freed) throw new Error(`webgpu: tensor ${describeShape(tensor.shape)} was used after free()`);
    return tensor;
  }
}

function padToWords(data: HostArray): Uint8Array {
  const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
  padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return padded;
}

/** IEEE half → float, including subnormals, infinities and NaN. */
export function halfToFloat(halves: Uint16Array): Float32Array {
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) {
    const h = halves[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    out[i] =
      exponent === 0
        ? sign * 2 ** -14 * (fraction / 1024)
        : exponent === 31
          ? fraction
            ? NaN
            : sign * Infinity
          : sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
  }
  return out;
}

/** bfloat16 is the top half of a float32. */
export function bfloatToFloat(bfloats: Uint16Array): Float32Array {
  const words = new Uint32Array(bfloats.length);
  for (let i = 0; i < bfloats.length; i++) words[i] = bfloats[i]! << 16;
  return new Float32Array(words.buffer);
}
