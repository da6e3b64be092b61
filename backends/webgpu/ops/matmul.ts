/**
 * matmul x [M, K] · wᵀ (w [N, K] plain f32/f16/bf16, or MLX affine-quantized) and embedding gather, over
 * kernels/matmul_quantized_gemv.wgsl, matmul_quantized_gemm.wgsl, matmul_plain_vec4.wgsl, matmul_plain.wgsl
 * and embedding_*.wgsl.
 *
 * Few rows of x (decode) run as a GEMV that reads each weight once with 16-byte loads; more rows
 * (prefill) run as a tiled GEMM. A weight matrix larger than one storage binding (Gemma 3's 262144-row
 * embedding and LM head, against lavapipe's 128 MiB) is bound in row chunks at 256-byte aligned offsets of
 * its buffer, one dispatch per chunk, each writing its own columns of the output. A GEMM with few output
 * tiles (a 64-row follow-up through a 2048-wide projection makes 32 of them, for a GPU with 132 SMs) is
 * split over k into partial sums that matmul_reduce_splits.wgsl adds up.
 */
import { isQuantized, type Matrix, type OpName, type Tensor } from "../../contract.js";
import { GpuTensor, Params, type Dispatch, type GpuRuntime } from "../runtime.js";
import { describeShape, grid1d } from "./grid.js";

export const IMPLEMENTED_OPS: OpName[] = ["matmul", "matmul_quantized", "embedding", "embedding_quantized"];

/** Rows of x up to which matmul runs as a GEMV: the weights are read once and arithmetic is cheap. */
export const GEMV_MAX_ROWS = 8;

/** Shape of the GEMV workgroups (override constants of its kernels); the bench sweeps these. */
export interface GemvTuning {
  /** Threads splitting one row's k: a power of two, ideally the subgroup size or a multiple. */
  threadsPerRow: number;
  /** Threads per workgroup, a power of two from threadsPerRow to 256; a workgroup covers 4 rows per slot. */
  workgroupSize: number;
}

let gemvTuningOverride: GemvTuning | null = null;

/** Fix the GEMV workgroup shape for every matrix (null: chosen per shape), for tuning and tests. */
export function setGemvTuning(tuning: GemvTuning | null): void {
  if (tuning) {
    const { threadsPerRow, workgroupSize } = tuning;
    const powerOfTwo = (value: number) => Number.isInteger(value) && value >= 1 && (value & (value - 1)) === 0;
    if (
      !powerOfTwo(threadsPerRow) ||
      !powerOfTwo(workgroupSize) ||
      threadsPerRow > workgroupSize ||
      workgroupSize > 256
    ) {
      throw new Error(`gemv tuning out of range: ${JSON.stringify(tuning)}`);
    }
  }
  gemvTuningOverride = tuning;
}

/**
 * The GEMV workgroup shape for a matrix of `rows` rows of `chunksPerRow` 16-byte chunks, from a sweep on
 * an H200 (bench/webgpu-kernels.ts --sweep): fewer threads per row the more rows there are (each thread
 * then covers more of its row, amortizing its fixed work), enough to fill the GPU when rows are few;
 * never more threads than a row has chunks.
 */
function gemvTuningFor(rows: number, chunksPerRow: number): GemvTuning {
  if (gemvTuningOverride) return gemvTuningOverride;
  const wanted = rows >= 65536 ? 8 : rows >= 8192 ? 16 : 32;
  const threadsPerRow = Math.min(wanted, 2 ** Math.floor(Math.log2(Math.max(1, chunksPerRow))));
  return { threadsPerRow, workgroupSize: 256 };
}

let bindingLimitOverride: number | null = null;

/**
 * Pretend a storage binding holds at most `bytes` (null: the device's own limit), so tests reach the
 * row-chunked path with small matrices.
 */
export function overrideBindingLimit(bytes: number | null): void {
  bindingLimitOverride = bytes;
}

function bindingLimit(runtime: GpuRuntime): number {
  return Math.min(bindingLimitOverride ?? Infinity, runtime.maxBindingBytes);
}

/** Storage binding offsets must be multiples of minStorageBufferOffsetAlignment, which is at most 256. */
const BINDING_OFFSET_ALIGNMENT = 256;
/** The GEMM's output tile: rows of w (and of x) per workgroup. */
const GEMM_TILE = 64;
const MAX_WORKGROUPS_PER_DIMENSION = 65535;
/**
 * Workgroups a GEMM should reach before it is split over k: an H200 has 132 SMs (WebGPU does not say
 * how many a device has), and 64-row prefills through 2048-wide projections made 32 tiles, 2.4 TFLOP/s
 * against 19 for 8192-wide ones (bench/forward-profile.ts).
 */
const GEMM_TARGET_WORKGROUPS = 256;
/** Least k a split sums: 8 steps of 32, so a workgroup's fixed costs (its tile setup, its writes) stay small. */
const GEMM_MIN_SPLIT_K = 256;
const GEMM_TILE_K = 32;

let gemmSplitOverride: number | null = null;

/** Split every GEMM over k into this many parts where k allows (null: chosen per shape), for tests. */
export function setGemmSplits(splits: number | null): void {
  if (splits !== null && (!Number.isInteger(splits) || splits < 1))
    throw new Error(`gemm splits must be ≥ 1, got ${splits}`);
  gemmSplitOverride = splits;
}

/** k per split (a multiple of the GEMM's k step) and the number of splits, for `tiles` output tiles. */
function gemmSplit(runtime: GpuRuntime, tiles: number, k: number): { splits: number; kPerSplit: number } {
  let wanted = 1;
  if (gemmSplitOverride !== null) wanted = gemmSplitOverride;
  // A CPU adapter runs a few workgroups at a time: nothing idles, and the extra pass would only cost.
  else if (!runtime.gpu.isCpuAdapter && tiles * 2 <= GEMM_TARGET_WORKGROUPS) {
    wanted = Math.min(Math.floor(GEMM_TARGET_WORKGROUPS / tiles), Math.floor(k / GEMM_MIN_SPLIT_K));
  }
  const kPerSplit = Math.ceil(Math.ceil(k / Math.max(1, wanted)) / GEMM_TILE_K) * GEMM_TILE_K;
  return { splits: Math.ceil(k / kPerSplit), kPerSplit };
}

/** Partial sums of split GEMMs: one scratch buffer per runtime, reused in order by every split GEMM. */
const splitScratch = new WeakMap<GpuRuntime, GpuTensor>();

function splitScratchFor(runtime: GpuRuntime, floats: number): GpuTensor {
  let scratch = splitScratch.get(runtime);
  if (!scratch || scratch.size < floats) {
    // Safe while recorded work still reads the old one: see GpuRuntime.release.
    if (scratch) runtime.release(scratch);
    scratch = runtime.allocate([floats], "f32");
    splitScratch.set(runtime, scratch);
  }
  return scratch;
}
/** Rows of w each GEMV thread accumulates (one vec4 in the kernels). */
const GEMV_ROWS_PER_SLOT = 4;
const WORKGROUP_SIZE = 256;

const DTYPE_CODE = { f32: 0, f16: 1, bf16: 2 } as const;
type FloatDtype = keyof typeof DTYPE_CODE;

function isFloatDtype(dtype: string): dtype is FloatDtype {
  return dtype in DTYPE_CODE;
}

/** A weight matrix after validation: its tensors, each [rows, …] with a fixed number of bytes per row. */
interface WeightLayout {
  quantized: boolean;
  rows: number;
  cols: number;
  /** weight for plain; weight, scales, biases for quantized. */
  tensors: GpuTensor[];
  /** Plain: the weight dtype. Quantized: the scales' dtype. */
  dtype: FloatDtype;
  bits: number;
  groupSize: number;
  /** e.g. "bf16" or "q4 g64 f16-scales": how the op names this weight in errors. */
  label: string;
}

function gpuTensor(op: string, role: string, tensor: Tensor): GpuTensor {
  if (!(tensor instanceof GpuTensor)) throw new Error(`${op}: ${role} belongs to another backend`);
  if (tensor.freed) throw new Error(`${op}: ${role} ${describeShape(tensor.shape)} was used after free()`);
  return tensor;
}

function expectShape(op: string, role: string, tensor: GpuTensor, shape: number[], dtypes: readonly string[]): void {
  const sameShape = tensor.shape.length === shape.length && tensor.shape.every((dim, i) => dim === shape[i]);
  if (!sameShape || !dtypes.includes(tensor.dtype)) {
    throw new Error(
      `${op}: ${role} should be ${dtypes.join("/")} ${describeShape(shape)}, got ${tensor.dtype} ${describeShape(tensor.shape)}`,
    );
  }
}

function describeWeight(op: string, matrix: Matrix): WeightLayout {
  if (!isQuantized(matrix)) {
    const weight = gpuTensor(op, "weight", matrix);
    const [rows = 0, cols = 0] = weight.shape;
    if (weight.shape.length !== 2 || !isFloatDtype(weight.dtype)) {
      throw new Error(
        `${op}: weight should be a 2-D f32/f16/bf16 matrix, got ${weight.dtype} ${describeShape(weight.shape)}`,
      );
    }
    return {
      quantized: false,
      rows,
      cols,
      tensors: [weight],
      dtype: weight.dtype,
      bits: 0,
      groupSize: 0,
      label: weight.dtype,
    };
  }
  const { rows, cols, bits, groupSize } = matrix;
  const weight = gpuTensor(op, "weight", matrix.weight);
  const scales = gpuTensor(op, "scales", matrix.scales);
  const biases = gpuTensor(op, "biases", matrix.biases);
  if (![4, 8].includes(bits) || ![32, 64, 128].includes(groupSize) || cols % groupSize !== 0) {
    throw new Error(`${op}: unsupported quantization: ${bits} bits, group ${groupSize}, ${cols} columns`);
  }
  expectShape(op, "quantized weight", weight, [rows, (cols * bits) / 32], ["u32"]);
  expectShape(op, "scales", scales, [rows, cols / groupSize], ["f32", "f16", "bf16"]);
  expectShape(op, "biases", biases, [rows, cols / groupSize], [scales.dtype]);
  const dtype = scales.dtype as FloatDtype;
  const label = `q${bits} g${groupSize} ${dtype}-scales`;
  return { quantized: true, rows, cols, tensors: [weight, scales, biases], dtype, bits, groupSize, label };
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const bytesPerRow = (tensor: GpuTensor) => tensor.byteLength / (tensor.shape[0] ?? 1);

/** A run of rows of a weight matrix and its tensors bound for those rows alone. */
interface RowChunk {
  firstRow: number;
  rows: number;
  bindings: GpuTensor[];
}

/**
 * Split a matrix into row chunks whose every tensor fits one binding: chunks start at rows where every
 * tensor's byte offset is 256-aligned, and hold at most `maxRows` rows (a grid dimension's worth).
 */
function rowChunks(op: string, layout: WeightLayout, limit: number, maxRows = Infinity): RowChunk[] {
  const { rows, tensors } = layout;
  const fits = tensors.every((tensor) => Math.ceil(tensor.byteLength / 4) * 4 <= limit);
  if (fits && rows <= maxRows) return [{ firstRow: 0, rows, bindings: tensors }];
  let alignment = 1;
  for (const tensor of tensors) {
    const rowAlignment = BINDING_OFFSET_ALIGNMENT / gcd(BINDING_OFFSET_ALIGNMENT, bytesPerRow(tensor));
    alignment = (alignment * rowAlignment) / gcd(alignment, rowAlignment);
    if (tensor.byteOffset % BINDING_OFFSET_ALIGNMENT !== 0) {
      throw new Error(`${op}: a ${layout.label} weight split in row chunks must start at a 256-byte aligned offset`);
    }
  }
  const fittingRows = Math.min(maxRows, ...tensors.map((tensor) => Math.floor(limit / bytesPerRow(tensor))));
  const chunkRows = Math.floor(fittingRows / alignment) * alignment;
  if (chunkRows === 0) {
    throw new Error(
      `${op}: cannot split ${layout.label} [${layout.rows}, ${layout.cols}] into row chunks of ${alignment} rows ` +
        `(needed for 256-byte aligned offsets) within the ${limit}-byte binding limit`,
    );
  }
  const chunks: RowChunk[] = [];
  for (let firstRow = 0; firstRow < rows; firstRow += chunkRows) {
    const count = Math.min(chunkRows, rows - firstRow);
    const bindings = tensors.map(
      (tensor) =>
        new GpuTensor(
          [count, ...tensor.shape.slice(1)],
          tensor.dtype,
          tensor.buffer,
          tensor.byteOffset + firstRow * bytesPerRow(tensor),
          "view",
        ),
    );
    chunks.push({ firstRow, rows: count, bindings });
  }
  return chunks;
}

function requireFitsBinding(op: string, role: string, tensor: GpuTensor, limit: number): void {
  if (tensor.byteLength > limit) {
    throw new Error(
      `${op}: ${role} ${describeShape(tensor.shape)} (${tensor.byteLength} bytes) exceeds the ${limit}-byte storage binding limit`,
    );
  }
}

/**
 * `gemv_subgroup` sums a row's lanes with subgroup shuffles alone, which needs every subgroup to span
 * them; `gemv` adds a pass through workgroup memory for smaller subgroups (lavapipe's 8) or none.
 */
/**
 * Chunks of k per block of x the quantized GEMV stages in workgroup memory: the whole row where it fits
 * beside the reduction scratch (one vec4 per thread) in at most 32 KiB, else as many as fit, a multiple
 * of the threads per row. Fitted to the row: workgroup memory is zeroed at every launch and bounds how
 * many workgroups share a multiprocessor, so an oversized block cost the LM head 60% on an H200.
 */
function xBlockChunks(
  runtime: GpuRuntime,
  m: number,
  chunksPerRow: number,
  bits: number,
  workgroupSize: number,
  threadsPerRow: number,
): number {
  const storage = Math.min(32768, runtime.gpu.limits.maxComputeWorkgroupStorageSize) - workgroupSize * 16;
  const wholeRow = Math.ceil(chunksPerRow / threadsPerRow) * threadsPerRow;
  const chunks = Math.min(wholeRow, Math.floor(storage / (m * 16 * (32 / bits))));
  // Fewer chunks than threads per row leave lanes idle; a multiple of them keeps every lane busy.
  return chunks >= threadsPerRow ? chunks - (chunks % threadsPerRow) : Math.max(1, chunks);
}

function gemvEntryPoint(runtime: GpuRuntime, threadsPerRow: number): "gemv" | "gemv_subgroup" {
  const smallestSubgroup = runtime.gpu.subgroupMinSize;
  return smallestSubgroup >= threadsPerRow ? "gemv_subgroup" : "gemv";
}

/**
 * The dispatches that compute out = x · wᵀ, without recording them: matmul() records them; the bench
 * replays them between its own timestamp queries.
 */
export function planMatmul(runtime: GpuRuntime, x: GpuTensor, w: Matrix, out: GpuTensor): Dispatch[] {
  const op = isQuantized(w) ? "matmul_quantized" : "matmul";
  const layout = describeWeight(op, w);
  const [m = 0, k = 0] = x.shape;
  if (x.dtype !== "f32" || x.shape.length !== 2 || k !== layout.cols) {
    throw new Error(
      `${op}: x should be f32 [M, ${layout.cols}] to multiply ${layout.label} w [${layout.rows}, ${layout.cols}], ` +
        `got ${x.dtype} ${describeShape(x.shape)}`,
    );
  }
  expectShape(op, "out", out, [m, layout.rows], ["f32"]);
  const limit = bindingLimit(runtime);
  requireFitsBinding(op, "x", x, limit);
  requireFitsBinding(op, "out", out, limit);
  if (m === 0 || layout.rows === 0) return [];

  const valuesPerChunk = layout.quantized ? 128 / layout.bits : layout.dtype === "f32" ? 4 : 8;
  // A few rows past a whole number of GEMM tiles, as in a follow-up turn (the previous answer's last
  // token and 64 new ones), would add a row of tiles that is almost empty yet costs as much as a full
  // one: 65 rows took about twice the GEMM time of 64. Those rows go through the GEMV instead, which
  // reads each weight once for up to GEMV_MAX_ROWS rows. (Views at whole tiles of rows keep every
  // binding offset a multiple of 256 bytes: 64 rows of f32 are 256 · columns bytes.)
  const tail = m % GEMM_TILE;
  if (m > GEMM_TILE && tail <= GEMV_MAX_ROWS && tail > 0 && k % valuesPerChunk === 0) {
    const head = m - tail;
    const rowsOf = (tensor: GpuTensor, first: number, count: number, cols: number) =>
      new GpuTensor([count, cols], "f32", tensor.buffer, tensor.byteOffset + first * cols * 4, "view");
    return [
      ...planMatmul(runtime, rowsOf(x, 0, head, k), w, rowsOf(out, 0, head, layout.rows)),
      ...planMatmul(runtime, rowsOf(x, head, tail, k), w, rowsOf(out, head, tail, layout.rows)),
    ];
  }
  const gemv = m <= GEMV_MAX_ROWS && k % valuesPerChunk === 0;
  const chunks = rowChunks(op, layout, limit, gemv ? Infinity : MAX_WORKGROUPS_PER_DIMENSION * GEMM_TILE);
  const dtypeConstants: Record<string, number> = layout.quantized
    ? { BITS: layout.bits }
    : { WEIGHT_DTYPE: DTYPE_CODE[layout.dtype] };

  return chunks.flatMap((chunk): Dispatch[] => {
    const params = new Params().u32(chunk.rows).u32(k).u32(m);
    if (!gemv) {
      const tiles = [Math.ceil(chunk.rows / GEMM_TILE), Math.ceil(m / GEMM_TILE)] as const;
      if (tiles[1] > MAX_WORKGROUPS_PER_DIMENSION) throw new Error(`${op}: ${m} rows of x exceed the grid`);
      const { splits, kPerSplit } = gemmSplit(runtime, tiles[0] * tiles[1], k);
      // Split: partial sums [splits, m, chunk rows] in the scratch buffer, then added up into out.
      const splitStride = m * chunk.rows;
      const target = splits > 1 ? splitScratchFor(runtime, splits * splitStride) : out;
      if (splits > 1) params.u32(chunk.rows).u32(0);
      else params.u32(layout.rows).u32(chunk.firstRow);
      if (layout.quantized) params.u32(Math.log2(layout.groupSize)).u32(DTYPE_CODE[layout.dtype]);
      params.u32(kPerSplit).u32(splits > 1 ? splitStride : 0);
      const file = layout.quantized ? "matmul_quantized_gemm.wgsl" : "matmul_plain.wgsl";
      const gemm: Dispatch = {
        file,
        entryPoint: "gemm",
        constants: dtypeConstants,
        params,
        bindings: [x, ...chunk.bindings, target],
        workgroups: [...tiles, splits],
      };
      if (splits === 1) return [gemm];
      const reduceParams = new Params()
        .u32(chunk.rows)
        .u32(m)
        .u32(splits)
        .u32(splitStride)
        .u32(layout.rows)
        .u32(chunk.firstRow);
      const reduce: Dispatch = {
        file: "matmul_reduce_splits.wgsl",
        entryPoint: "reduce",
        params: reduceParams,
        bindings: [target, out],
        workgroups: grid1d(splitStride, 256),
      };
      return [gemm, reduce];
    }
    params.u32(layout.rows).u32(chunk.firstRow);
    // The GEMV takes group size and scale dtype as pipeline constants, which made it faster, and
    // ignores these two words.
    if (layout.quantized) params.u32(Math.log2(layout.groupSize)).u32(DTYPE_CODE[layout.dtype]);
    const bindings = [x, ...chunk.bindings, out];
    const { threadsPerRow, workgroupSize } = gemvTuningFor(layout.rows, k / valuesPerChunk);
    const constants: Record<string, number> = {
      ...dtypeConstants,
      ...(layout.quantized ? { SCALE_DTYPE: DTYPE_CODE[layout.dtype], GROUP_SIZE: layout.groupSize, K: k } : {}),
      BATCH: m,
      THREADS_PER_ROW: threadsPerRow,
      WORKGROUP_SIZE: workgroupSize,
    };
    if (layout.quantized) {
      constants.BLOCK_CHUNKS = xBlockChunks(runtime, m, k / valuesPerChunk, layout.bits, workgroupSize, threadsPerRow);
    }
    const rowsPerWorkgroup = (workgroupSize / threadsPerRow) * GEMV_ROWS_PER_SLOT;
    const file = layout.quantized ? "matmul_quantized_gemv.wgsl" : "matmul_plain_vec4.wgsl";
    const entryPoint = gemvEntryPoint(runtime, threadsPerRow);
    return [{ file, entryPoint, constants, params, bindings, workgroups: grid1d(chunk.rows, rowsPerWorkgroup) }];
  });
}

/** x [M, K] · wᵀ with w [N, K] → f32 [M, N]. */
export function matmul(runtime: GpuRuntime, x: GpuTensor, w: Matrix): GpuTensor {
  const rows = isQuantized(w) ? w.rows : (w.shape[0] ?? 0);
  const out = runtime.allocate([x.shape[0] ?? 0, rows], "f32");
  try {
    for (const dispatch of planMatmul(runtime, x, w, out)) runtime.dispatch(dispatch);
  } catch (error) {
    runtime.release(out);
    throw error;
  }
  return out;
}

/** The dispatches that gather rows `ids` of `table` into out, without recording them. */
export function planEmbedding(runtime: GpuRuntime, table: Matrix, ids: GpuTensor, out: GpuTensor): Dispatch[] {
  const op = isQuantized(table) ? "embedding_quantized" : "embedding";
  const layout = describeWeight(op, table);
  if (ids.dtype !== "u32" || ids.shape.length !== 1) {
    throw new Error(`${op}: ids should be u32 [T], got ${ids.dtype} ${describeShape(ids.shape)}`);
  }
  const tokens = ids.shape[0] ?? 0;
  expectShape(op, "out", out, [tokens, layout.cols], ["f32"]);
  const limit = bindingLimit(runtime);
  requireFitsBinding(op, "out", out, limit);
  if (tokens === 0 || layout.cols === 0) return [];
  const file = layout.quantized ? "embedding_quantized.wgsl" : "embedding_plain.wgsl";
  const constants: Record<string, number> = layout.quantized
    ? { BITS: layout.bits, SCALE_DTYPE: DTYPE_CODE[layout.dtype] }
    : { TABLE_DTYPE: DTYPE_CODE[layout.dtype] };
  return rowChunks(op, layout, limit).map((chunk, index): Dispatch => {
    const params = new Params()
      .u32(layout.cols)
      .u32(tokens)
      .u32(chunk.firstRow)
      .u32(chunk.rows)
      .u32(layout.rows)
      .u32(index === 0 ? 1 : 0);
    if (layout.quantized) params.u32(layout.groupSize);
    return {
      file,
      entryPoint: "gather",
      constants,
      params,
      bindings: [...chunk.bindings, ids, out],
      workgroups: grid1d(tokens * layout.cols, WORKGROUP_SIZE),
    };
  });
}

/** Rows `ids` (u32 [T]) of table [rows, cols] → f32 [T, cols]; ids past the end give rows of zeros. */
export function embedding(runtime: GpuRuntime, table: Matrix, ids: GpuTensor): GpuTensor {
  const cols = isQuantized(table) ? table.cols : (table.shape[1] ?? 0);
  const out = runtime.allocate([ids.shape[0] ?? 0, cols], "f32");
  try {
    for (const dispatch of planEmbedding(runtime, table, ids, out)) runtime.dispatch(dispatch);
  } catch (error) {
    runtime.release(out);
    throw error;
  }
  return out;
}
