/**
 * The MLX backend: the contract over the native addon (native/). Every op is checked here, on the
 * calling thread, then enqueued to the addon's compute thread, which builds MLX's lazy graph; reads,
 * exports and flushes evaluate it there and settle their Promises, so the event loop never waits on
 * compute. Weights are used as stored (f32/f16/bf16, MLX affine-quantized), activations are f32.
 */
import {
  DTYPE_BYTES,
  OP_NAMES,
  isQuantized,
  type AttentionOptions,
  type AttentionSequence,
  type Backend,
  type DType,
  type HostArray,
  type KvCache,
  type KvCacheSpec,
  type Matrix,
  type OpName,
  type PreparedAttentionBatch,
  type RopeOptions,
  type Tensor,
} from "../contract.js";
import { DTYPE_CODES, OP_CODES, loadAddon, type Handle, type MlxAddon } from "./addon.js";
import {
  MAX_TOP_K,
  checkAttention,
  describeWeight,
  requireCopyable,
  requireF32,
  resolveAxis,
  rowsOf,
} from "./checks.js";
import { MlxAttentionBatch, MlxKvCache } from "./kv-cache.js";
import { memoryReport, type MlxMemoryLimits, type MlxMemoryReport } from "./memory.js";
import { RopeRates } from "./rope.js";
import { MlxTensor, TensorLifetimes, describeShape, sizeOf } from "./tensor.js";
import { checkRope } from "../op-checks.js";

export { memoryLimitsFromBudget, type MlxMemoryLimits, type MlxMemoryReport } from "./memory.js";

export class MlxBackend implements Backend {
  readonly name = "mlx";
  readonly supportedOps: ReadonlySet<OpName> = new Set(OP_NAMES);
  private readonly tensors: TensorLifetimes;
  private kvCacheBytes = 0;
  private readonly ropeRates = new RopeRates();
  /** Safety net for caches and batches dropped without dispose(). */
  private readonly disposables = new FinalizationRegistry<{ release: () => void; bytes: number }>(
    ({ release, bytes }) => {
      release();
      this.kvCacheBytes -= bytes;
    },
  );

  private constructor(
    private readonly addon: MlxAddon,
    readonly deviceDescription: string,
  ) {
    this.tensors = new TensorLifetimes(addon);
  }

  static async create(): Promise<MlxBackend> {
    const addon = loadAddon();
    const description = new TextDecoder().decode(await addon.describe());
    return new MlxBackend(addon, description);
  }

  get failure(): string | null {
    return this.addon.failure();
  }

  /** Apply MLX memory limits (see memoryLimitsFromBudget); resolves once the compute thread has. */
  setMemoryLimits(limits: MlxMemoryLimits): Promise<void> {
    return this.addon.setLimits(limits.memoryBytes ?? -1, limits.cacheBytes ?? -1);
  }

  upload(
    data: HostArray,
    shape: readonly number[],
    dtype: DType,
    role: "weights" | "activations" = "activations",
  ): Tensor {
    const bytes = sizeOf(shape) * DTYPE_BYTES[dtype];
    if (data.byteLength !== bytes || !shape.every((dim) => Number.isInteger(dim) && dim >= 0)) {
      throw new Error(
        `upload: ${data.byteLength} bytes do not fill a ${dtype} tensor of shape ${describeShape(shape)}`,
      );
    }
    const handle = this.addon.upload(data, shape, DTYPE_CODES[dtype]);
    return this.tensors.adopt(handle, shape, dtype, role === "weights" ? bytes : 0);
  }

  async read(tensor: Tensor): Promise<Float32Array | Uint32Array | Int32Array> {
    const own = this.own(tensor);
    const bytes = await this.addon.read(own.handle);
    if (own.dtype === "u32") return new Uint32Array(bytes);
    if (own.dtype === "i32") return new Int32Array(bytes);
    return new Float32Array(bytes);
  }

  free(tensor: Tensor): void {
    this.tensors.release(this.own(tensor));
  }

  flush(): Promise<void> {
    return this.addon.flush();
  }

  embedding(table: Matrix, ids: Tensor): Tensor {
    const op = isQuantized(table) ? "embedding_quantized" : "embedding";
    const layout = describeWeight(op, table, (role, tensor) => this.own(tensor as Tensor, op, role));
    const idsTensor = this.own(ids, op, "ids");
    if (idsTensor.dtype !== "u32" || idsTensor.shape.length !== 1) {
      throw new Error(`${op}: ids should be u32 [T], got ${idsTensor.dtype} ${describeShape(idsTensor.shape)}`);
    }
    const shape = [idsTensor.shape[0]!, layout.cols];
    if (!isQuantized(table)) return this.run(OP_CODES.embedding, [this.own(table), idsTensor], [], shape);
    const inputs = [table.weight, table.scales, table.biases].map((tensor) => this.own(tensor));
    return this.run(OP_CODES.embeddingQuantized, [...inputs, idsTensor], [table.groupSize, table.bits], shape);
  }

  matmul(x: Tensor, w: Matrix): Tensor {
    const op = isQuantized(w) ? "matmul_quantized" : "matmul";
    const layout = describeWeight(op, w, (role, tensor) => this.own(tensor as Tensor, op, role));
    const input = this.own(x, op, "x");
    if (input.dtype !== "f32" || input.shape.length !== 2 || input.shape[1] !== layout.cols) {
      throw new Error(
        `${op}: x should be f32 [M, ${layout.cols}] to multiply ${layout.label} w [${layout.rows}, ${layout.cols}], ` +
          `got ${input.dtype} ${describeShape(input.shape)}`,
      );
    }
    const shape = [input.shape[0]!, layout.rows];
    if (!isQuantized(w)) return this.run(OP_CODES.matmul, [input, this.own(w)], [], shape);
    const inputs = [w.weight, w.scales, w.biases].map((tensor) => this.own(tensor));
    return this.run(OP_CODES.matmulQuantized, [input, ...inputs], [w.groupSize, w.bits], shape);
  }

  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
    const input = this.own(x);
    const w = this.own(weight);
    const { cols } = rowsOf("rms_norm", input);
    if (w.shape.length !== 1 || w.shape[0] !== cols) {
      throw new Error(`rms_norm: weight ${describeShape(w.shape)} does not match x ${describeShape(input.shape)}`);
    }
    if (!["f32", "f16", "bf16"].includes(w.dtype))
      throw new Error(`rms_norm: weight must be f32, f16 or bf16, got ${w.dtype}`);
    return this.run(OP_CODES.rmsNorm, [input, w], [eps], input.shape);
  }

  rope(x: Tensor, positions: Tensor, options: RopeOptions): Tensor {
    const input = this.own(x);
    const at = this.own(positions);
    checkRope(input, at, options);
    const turns = this.ropeRates.get(options);
    return this.run(OP_CODES.rope, [input, at], [options.dims, options.traditional ? 1 : 0, ...turns], input.shape);
  }

  geluTanh(x: Tensor): Tensor {
    return this.unary("gelu_tanh", OP_CODES.geluTanh, x);
  }
  silu(x: Tensor): Tensor {
    return this.unary("silu", OP_CODES.silu, x);
  }
  add(a: Tensor, b: Tensor): Tensor {
    return this.binary("add", OP_CODES.add, a, b);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.binary("mul", OP_CODES.mul, a, b);
  }
  scale(x: Tensor, factor: number): Tensor {
    return this.unary("scale", OP_CODES.scale, x, [factor]);
  }
  softmax(x: Tensor): Tensor {
    const input = this.own(x);
    rowsOf("softmax", input);
    return this.run(OP_CODES.softmax, [input], [], input.shape);
  }

  argmax(x: Tensor): Tensor {
    const input = this.own(x);
    rowsOf("argmax", input);
    return this.run(OP_CODES.argmax, [input], [], input.shape.slice(0, -1), "u32");
  }

  topK(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
    const input = this.own(x);
    const { cols } = rowsOf("top_k", input);
    if (!Number.isInteger(k) || k < 1 || k > MAX_TOP_K || k > cols) {
      throw new Error(
        `top_k: k = ${k} is not possible for x ${describeShape(input.shape)}: k must be an integer from 1 to ` +
          `min(${MAX_TOP_K}, ${cols})`,
      );
    }
    const shape = [...input.shape.slice(0, -1), k];
    const handle = this.addon.op(OP_CODES.topK, [input.handle], [k]);
    return { values: this.tensors.adopt(handle, shape, "f32"), indices: this.tensors.adopt(handle + 1, shape, "u32") };
  }

  reshape(x: Tensor, shape: readonly number[]): Tensor {
    const input = this.own(x);
    if (sizeOf(shape) !== sizeOf(input.shape)) {
      throw new Error(
        `reshape: ${describeShape(input.shape)} has ${sizeOf(input.shape)} elements, ${describeShape(shape)} needs ${sizeOf(shape)}`,
      );
    }
    return this.run(OP_CODES.reshape, [input], [...shape], shape, input.dtype);
  }

  slice(x: Tensor, axis: number, start: number, end: number): Tensor {
    const input = this.own(x);
    requireCopyable("slice", input);
    const d = resolveAxis("slice", axis, input.shape);
    const length = input.shape[d]!;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > length) {
      throw new Error(`slice: [${start}, ${end}) is out of range for axis ${axis} of ${describeShape(input.shape)}`);
    }
    const shape = input.shape.map((dim, i) => (i === d ? end - start : dim));
    return this.run(OP_CODES.slice, [input], [d, start, end], shape, input.dtype);
  }

  concat(tensors: readonly Tensor[], axis: number): Tensor {
    const inputs = tensors.map((tensor) => this.own(tensor));
    const first = inputs[0];
    if (!first) throw new Error("concat: needs at least one tensor");
    inputs.forEach((tensor) => requireCopyable("concat", tensor));
    const d = resolveAxis("concat", axis, first.shape);
    const agree = inputs.every(
      (tensor) =>
        tensor.dtype === first.dtype &&
        tensor.shape.length === first.shape.length &&
        tensor.shape.every((dim, i) => i === d || dim === first.shape[i]),
    );
    if (!agree) {
      const shapes = inputs.map((tensor) => describeShape(tensor.shape)).join(", ");
      throw new Error(
        `concat: cannot join ${inputs.map((t) => t.dtype).join(", ")} tensors ${shapes} along axis ${axis}`,
      );
    }
    const shape = first.shape.map((dim, i) => (i === d ? inputs.reduce((sum, t) => sum + t.shape[d]!, 0) : dim));
    return this.run(OP_CODES.concat, inputs, [d], shape, first.dtype);
  }

  transpose(x: Tensor, permutation: readonly number[]): Tensor {
    const input = this.own(x);
    requireCopyable("transpose", input);
    const isPermutation =
      permutation.length === input.shape.length &&
      [...permutation].sort((a, b) => a - b).every((value, i) => value === i);
    if (!isPermutation) {
      throw new Error(
        `transpose: [${permutation.join(", ")}] is not a permutation of the axes of ${describeShape(input.shape)}`,
      );
    }
    const shape = permutation.map((axis) => input.shape[axis]!);
    return this.run(OP_CODES.transpose, [input], [...permutation], shape, input.dtype);
  }

  createKvCache(spec: KvCacheSpec): KvCache {
    const cache: MlxKvCache = new MlxKvCache(
      this.addon,
      spec,
      (tensor) => this.own(tensor),
      () => this.forget(cache),
    );
    this.remember(cache, cache.totalBytes);
    return cache;
  }

  prepareAttention(sequences: readonly AttentionSequence[]): PreparedAttentionBatch {
    const batch: MlxAttentionBatch = new MlxAttentionBatch(this.addon, sequences, () => this.forget(batch));
    this.remember(batch, 0);
    return batch;
  }

  attention(
    q: Tensor,
    cache: KvCache,
    layer: number,
    batch: PreparedAttentionBatch,
    options: AttentionOptions,
  ): Tensor {
    if (!(cache instanceof MlxKvCache)) throw new Error("attention: the KV cache belongs to another backend");
    if (!(batch instanceof MlxAttentionBatch)) throw new Error("attention: the batch was prepared by another backend");
    if (!batch.live) throw new Error("attention: the prepared batch was used after dispose()");
    if (!cache.live) throw new Error("attention: the KV cache was used after dispose()");
    const queries = this.own(q);
    const window = checkAttention(queries, cache.spec, batch.totalQueries, layer, options);
    batch.checkBlockTables(cache);
    const handle = this.addon.attention(queries.handle, cache.handle, layer, batch.handle, options.scale, window);
    return this.tensors.adopt(handle, queries.shape, "f32");
  }

  memory(): MlxMemoryReport {
    return memoryReport(this.addon.memory(), this.tensors.weightsBytes, this.kvCacheBytes);
  }

  /** Arrays the compute thread holds for live tensors (as last published): a leak shows here. */
  liveArrays(): number {
    return this.addon.memory().handles;
  }

  dispose(): void {
    // The compute thread is the process's; tensors, caches and batches release themselves.
  }

  /** Track a cache or batch: its bytes now, and its native half freed if it is dropped undisposed. */
  private remember(owner: MlxKvCache | MlxAttentionBatch, bytes: number): void {
    this.kvCacheBytes += bytes;
    const { addon } = this;
    const handle = owner.handle;
    // The release closure must not reach the owner, or the owner could never be collected.
    const release = owner instanceof MlxKvCache ? () => addon.kvFree(handle) : () => addon.attentionFree(handle);
    this.disposables.register(owner, { release, bytes }, owner);
  }

  private forget(owner: MlxKvCache | MlxAttentionBatch): void {
    if (owner instanceof MlxKvCache) this.kvCacheBytes -= owner.totalBytes;
    this.disposables.unregister(owner);
  }

  private unary(op: string, code: number, x: Tensor, params: number[] = []): Tensor {
    const input = this.own(x);
    requireF32(op, input);
    return this.run(code, [input], params, input.shape);
  }

  private binary(op: string, code: number, a: Tensor, b: Tensor): Tensor {
    const left = this.own(a);
    let right = this.own(b);
    requireF32(op, left, right);
    const sameSize = sizeOf(right.shape) === sizeOf(left.shape);
    const rowBroadcast = right.shape.length === 1 && right.shape[0] === left.shape[left.shape.length - 1];
    if (!sameSize && !rowBroadcast) {
      throw new Error(`${op}: cannot combine ${describeShape(left.shape)} with ${describeShape(right.shape)}`);
    }
    let reshaped: MlxTensor | null = null;
    if (sameSize && describeShape(right.shape) !== describeShape(left.shape)) {
      reshaped = this.run(OP_CODES.reshape, [right], [...left.shape], left.shape);
      right = reshaped;
    }
    const out = this.run(code, [left, right], [], left.shape);
    if (reshaped) this.tensors.release(reshaped);
    return out;
  }

  private run(
    code: number,
    inputs: readonly MlxTensor[],
    params: readonly number[],
    shape: readonly number[],
    dtype: DType = "f32",
  ): MlxTensor {
    const handle: Handle = this.addon.op(
      code,
      inputs.map((tensor) => tensor.handle),
      params,
    );
    return this.tensors.adopt(handle, shape, dtype);
  }

  private own(tensor: Tensor, op = "mlx", role = "tensor"): MlxTensor {
    if (!(tensor instanceof MlxTensor)) throw new Error(`${op}: ${role} belongs to another backend`);
    if (tensor.freed) throw new Error(`${op}: ${role} ${describeShape(tensor.shape)} was used after free()`);
    return tensor;
  }
}
