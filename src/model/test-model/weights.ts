/**
 * A test model's tensors as bytes, generated a chunk of rows at a time so that no tensor — the
 * largest, Gemma 3 12B's embedding, is 4 GB in float32 — is ever whole in memory.
 *
 * Quantization is what `mlx_lm.convert -q` does: nn.quantize replaces every Linear and Embedding
 * whose input dimension divides by the group size, and its `weight` becomes the uint32-packed
 * values plus `scales` and `biases` in the model's dtype; norms and biases stay as they are. MLX
 * quantizes the weights it holds in the model dtype, so the values are first rounded to that dtype;
 * mx.quantize on bf16/f16 input gives exactly what quantizeAffine gives on the same values in
 * float32 with its scales and biases then rounded to the dtype (checked against MLX in
 * test/model/make-test-model.test.ts, through mlx_lm.convert itself).
 */
import type { QuantizationSpec } from "../config.js";
import { quantizeAffine } from "../quantize.js";
import type { SafetensorsDType } from "../safetensors.js";
import { DTYPE_BYTES, SAFETENSORS_DTYPE, encodeFloats, roundToDtype, type TestModelDtype } from "./encode.js";
import type { WeightPlan } from "./layout.js";
import { RowRandom } from "./random.js";

export interface WeightFormat {
  dtype: TestModelDtype;
  quantization: QuantizationSpec | null;
}

export interface OutputTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  byteLength: number;
}

/** Values generated per chunk: 16 MB of float32. */
const CHUNK_VALUES = 4 * 1024 * 1024;

function rowsAndColumns(shape: readonly number[]): [number, number] {
  if (shape.length === 1) return [1, shape[0]!];
  return [shape[0]!, shape.slice(1).reduce((product, dim) => product * dim, 1)];
}

export function isQuantized(plan: WeightPlan, format: WeightFormat): boolean {
  const quantization = format.quantization;
  return quantization !== null && plan.quantizable && plan.shape.at(-1)! % quantization.groupSize === 0;
}

/** The stored tensors one planned weight becomes: itself, or weight + scales + biases. */
export function outputTensors(plan: WeightPlan, format: WeightFormat): OutputTensor[] {
  const dtype = SAFETENSORS_DTYPE[format.dtype];
  const bytes = DTYPE_BYTES[format.dtype];
  const [rows, cols] = rowsAndColumns(plan.shape);
  if (!isQuantized(plan, format)) {
    return [{ name: plan.name, dtype, shape: plan.shape, byteLength: rows * cols * bytes }];
  }
  const { bits, groupSize } = format.quantization!;
  const module = plan.name.replace(/\.weight$/, "");
  const groups = [rows, cols / groupSize];
  return [
    { name: plan.name, dtype: "U32", shape: [rows, (cols * bits) / 32], byteLength: (rows * cols * bits) / 8 },
    { name: `${module}.scales`, dtype, shape: groups, byteLength: rows * (cols / groupSize) * bytes },
    { name: `${module}.biases`, dtype, shape: groups, byteLength: rows * (cols / groupSize) * bytes },
  ];
}

/** Rows per chunk of `plan`, and how many chunks it takes. */
export function chunkLayout(plan: WeightPlan): { chunkRows: number; chunks: number } {
  const [rows, cols] = rowsAndColumns(plan.shape);
  const chunkRows = Math.max(1, Math.floor(CHUNK_VALUES / cols));
  return { chunkRows, chunks: Math.ceil(rows / chunkRows) };
}

/**
 * Generates the chunks of one planned weight, in any order: chunk `index` holds rows index·chunkRows
 * … of every output tensor, in outputTensors() order. Each row has its own random stream, so a chunk
 * is the same bytes whoever generates it and whenever (worker threads do, for large models).
 */
export class ChunkGenerator {
  private readonly random: RowRandom;
  private readonly head: LmHeadSources | null;

  constructor(
    private readonly plan: WeightPlan,
    private readonly format: WeightFormat,
    seed: number,
  ) {
    this.random = new RowRandom(seed);
    const [rows] = rowsAndColumns(plan.shape);
    const init = plan.init;
    this.head =
      init.kind === "lm-head"
        ? lmHeadSources(rows, init.neverPredicted, this.random.start(`${plan.name}#order`, 0))
        : null;
  }

  chunk(index: number): Uint8Array[] {
    const { plan, format, random } = this;
    const [rows, cols] = rowsAndColumns(plan.shape);
    const { chunkRows } = chunkLayout(plan);
    const first = index * chunkRows;
    const count = Math.min(chunkRows, rows - first);
    const init = plan.init;
    const values = new Float32Array(count * cols);
    for (let row = 0; row < count; row++) {
      if (init.kind === "normal") {
        random.start(plan.name, first + row).fillNormal(values, row * cols, cols, init.mean, init.std);
      } else {
        fillLmHeadRow(values.subarray(row * cols, (row + 1) * cols), first + row, init, this.head!, random, plan.name);
      }
    }
    roundToDtype(values, format.dtype);
    const quantization = isQuantized(plan, format) ? format.quantization! : null;
    if (quantization === null) return [encodeFloats(values, format.dtype)];
    const { weight, scales, biases } = quantizeAffine(values, count, cols, quantization.groupSize, quantization.bits);
    return [new Uint8Array(weight.buffer), encodeFloats(scales, format.dtype), encodeFloats(biases, format.dtype)];
  }
}

/**
 * The bytes of `plan`'s output tensors, chunk by chunk of whole rows: each yielded array holds the
 * next bytes of every output tensor, in outputTensors() order.
 */
export function* tensorChunks(plan: WeightPlan, format: WeightFormat, seed: number): Generator<Uint8Array[]> {
  const generator = new ChunkGenerator(plan, format, seed);
  const { chunks } = chunkLayout(plan);
  for (let index = 0; index < chunks; index++) yield generator.chunk(index);
}

interface LmHeadSources {
  /** Per row: the embedding row it copies, or -1 for a plain normal row. */
  copies: Int32Array;
  /** Per row: a second embedding row added to it (a special token's), or -1. */
  adds: Int32Array;
}

function lmHeadSources(vocab: number, neverPredicted: readonly number[], random: RowRandom): LmHeadSources {
  const special = new Set(neverPredicted.filter((id) => id >= 0 && id < vocab));
  const ordinary: number[] = [];
  for (let id = 0; id < vocab; id++) if (!special.has(id)) ordinary.push(id);
  const order = random.permutation(ordinary.length);
  const copies = new Int32Array(vocab).fill(-1);
  const adds = new Int32Array(vocab).fill(-1);
  ordinary.forEach((id, k) => (copies[id] = ordinary[order[k]!]!));
  [...special].sort((a, b) => a - b).forEach((id, k) => (adds[ordinary[k % ordinary.length]!] = id));
  return { copies, adds };
}

function fillLmHeadRow(
  out: Float32Array,
  row: number,
  init: Extract<WeightPlan["init"], { kind: "lm-head" }>,
  sources: LmHeadSources,
  random: RowRandom,
  name: string,
): void {
  const { mean, std } = init.embeddingInit;
  const cols = out.length;
  const copy = sources.copies[row]!;
  if (copy < 0) {
    random.start(name, row).fillNormal(out, 0, cols, 0, 1 / Math.sqrt(cols));
  } else {
    random.start(init.embedding, copy).fillNormal(out, 0, cols, mean, std);
    for (let i = 0; i < cols; i++) out[i] = out[i]! * init.scale;
  }
  const added = sources.adds[row]!;
  if (added >= 0) {
    const extra = new Float32Array(cols);
    random.start(init.embedding, added).fillNormal(extra, 0, cols, mean, std);
    for (let i = 0; i < cols; i++) out[i] = out[i]! + extra[i]! * init.scale;
  }
}
