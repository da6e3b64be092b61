/**
 * What the MLX backend refuses, checked on the calling thread before anything is enqueued, so a
 * caller's mistake is a synchronous error naming the op and the shapes (the same wording as the
 * WebGPU backend), never a failed array found later on the compute thread.
 */
import { isQuantized, type AttentionOptions, type KvCacheSpec, type Matrix } from "../contract.js";
import { describeShape, sizeOf, type MlxTensor } from "./tensor.js";

export const MAX_TOP_K = 256;

export function requireF32(op: string, ...tensors: MlxTensor[]): void {
  for (const tensor of tensors) {
    if (tensor.dtype !== "f32")
      throw new Error(`${op}: expects f32 activations, got ${tensor.dtype} ${describeShape(tensor.shape)}`);
  }
}

/** Rows and row length of an f32 tensor processed along its last axis. */
export function rowsOf(op: string, x: MlxTensor): { rows: number; cols: number } {
  requireF32(op, x);
  const cols = x.shape[x.shape.length - 1] ?? 0;
  if (x.shape.length === 0 || cols === 0)
    throw new Error(`${op}: needs a non-empty last axis, got ${describeShape(x.shape)}`);
  return { rows: sizeOf(x.shape) / cols, cols };
}

export function expectShape(
  op: string,
  role: string,
  tensor: MlxTensor,
  shape: number[],
  dtypes: readonly string[],
): void {
  const sameShape = tensor.shape.length === shape.length && tensor.shape.every((dim, i) => dim === shape[i]);
  if (!sameShape || !dtypes.includes(tensor.dtype)) {
    throw new Error(
      `${op}: ${role} should be ${dtypes.join("/")} ${describeShape(shape)}, got ${tensor.dtype} ${describeShape(tensor.shape)}`,
    );
  }
}

export interface WeightLayout {
  rows: number;
  cols: number;
  /** e.g. "bf16" or "q4 g64 f16-scales": how the op names this weight in errors. */
  label: string;
}

/** A weight matrix's rows, columns and label; `own` turns each of its tensors into this backend's. */
export function describeWeight(
  op: string,
  matrix: Matrix,
  own: (role: string, tensor: unknown) => MlxTensor,
): WeightLayout {
  if (!isQuantized(matrix)) {
    const weight = own("weight", matrix);
    if (weight.shape.length !== 2 || !["f32", "f16", "bf16"].includes(weight.dtype)) {
      throw new Error(
        `${op}: weight should be a 2-D f32/f16/bf16 matrix, got ${weight.dtype} ${describeShape(weight.shape)}`,
      );
    }
    return { rows: weight.shape[0]!, cols: weight.shape[1]!, label: weight.dtype };
  }
  const { rows, cols, bits, groupSize } = matrix;
  const weight = own("weight", matrix.weight);
  const scales = own("scales", matrix.scales);
  const biases = own("biases", matrix.biases);
  if (![4, 8].includes(bits) || ![32, 64, 128].includes(groupSize) || cols % groupSize !== 0) {
    throw new Error(`${op}: unsupported quantization: ${bits} bits, group ${groupSize}, ${cols} columns`);
  }
  expectShape(op, "quantized weight", weight, [rows, (cols * bits) / 32], ["u32"]);
  expectShape(op, "scales", scales, [rows, cols / groupSize], ["f32", "f16", "bf16"]);
  expectShape(op, "biases", biases, [rows, cols / groupSize], [scales.dtype]);
  return { rows, cols, label: `q${bits} g${groupSize} ${scales.dtype}-scales` };
}

/** A numpy-style axis (negative counts from the end) as an index into the shape. */
export function resolveAxis(op: string, axis: number, shape: readonly number[]): number {
  const resolved = axis < 0 ? axis + shape.length : axis;
  if (!Number.isInteger(axis) || resolved < 0 || resolved >= shape.length) {
    throw new Error(`${op}: axis ${axis} is out of range for ${describeShape(shape)}`);
  }
  return resolved;
}

/** Layout ops move 4-byte elements, as on every backend (16-bit weights are never sliced). */
export function requireCopyable(op: string, x: MlxTensor): void {
  if (!["f32", "u32", "i32"].includes(x.dtype)) {
    throw new Error(`${op}: supports 4-byte dtypes (f32, u32, i32), got ${x.dtype} ${describeShape(x.shape)}`);
  }
}

/**
 * An attention call's queries, layer and options against the cache's geometry and the batch's size;
 * returns the sliding window as the addon takes it (0: none).
 */
export function checkAttention(
  queries: MlxTensor,
  spec: KvCacheSpec,
  totalQueries: number,
  layer: number,
  options: AttentionOptions,
): number {
  const { kvHeads, headDim, layers } = spec;
  const [tokens, qHeads] = queries.shape;
  const expected = `[${totalQueries}, qHeads (a multiple of ${kvHeads}), ${headDim}]`;
  if (
    queries.dtype !== "f32" ||
    queries.shape.length !== 3 ||
    tokens !== totalQueries ||
    queries.shape[2] !== headDim ||
    !qHeads ||
    qHeads % kvHeads !== 0
  ) {
    throw new Error(`attention: q must be f32 ${expected}, got ${queries.dtype} ${describeShape(queries.shape)}`);
  }
  if (!Number.isInteger(layer) || layer < 0 || layer >= layers) {
    throw new Error(`attention: layer ${layer} is outside 0…${layers - 1}`);
  }
  if (!Number.isFinite(options.scale)) throw new Error(`attention: scale must be finite, got ${options.scale}`);
  const window = options.slidingWindow ?? 0;
  if (!Number.isInteger(window) || window < 0 || options.slidingWindow === 0) {
    throw new Error(
      `attention: slidingWindow must be a positive integer or null, got ${String(options.slidingWindow)}`,
    );
  }
  return window;
}
