/**
 * The backend contract: what model files and the engine may ask of a compute backend, in the manner
 * of ggml-backend's interface. Two halves: tensor ops (recorded lazily where the backend allows,
 * executed when a result is read), and paged KV-cache storage for ragged batches.
 *
 * Conventions, shared by every backend and checked by conformance/:
 * - Row-major shapes. Activations are f32 [tokens, features]; a ragged batch concatenates the tokens
 *   of all its sequences along the first axis (vLLM's flattened layout).
 * - Weights may be stored f32, f16 or bf16, or MLX affine-quantized (see QuantizedMatrix); every op
 *   accumulates in f32 and returns f32 activations.
 * - `matmul(x, w)` computes x · wᵀ with w laid out [outFeatures, inFeatures], as in nn.Linear and as
 *   weights are stored in safetensors.
 */

export type DType = "f32" | "f16" | "bf16" | "u32" | "i32";

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, u32: 4, i32: 4 };

export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/**
 * A matrix [rows, cols] in MLX's affine quantization, exactly as mlx-lm writes it: `weight` packs
 * 32/bits values per uint32 little-end first ([rows, cols·bits/32]); `scales` and `biases` hold one
 * value per group of `groupSize` consecutive columns ([rows, cols/groupSize], f16/bf16/f32). The value
 * at (r, c) is scales[r, c/g] · q + biases[r, c/g].
 */
export interface QuantizedMatrix {
  readonly kind: "quantized";
  readonly weight: Tensor;
  readonly scales: Tensor;
  readonly biases: Tensor;
  readonly rows: number;
  readonly cols: number;
  readonly groupSize: 32 | 64 | 128;
  readonly bits: 4 | 8;
}

/** A weight matrix: a plain 2-D tensor [rows, cols] (f32/f16/bf16) or a quantized one. */
export type Matrix = Tensor | QuantizedMatrix;

export function isQuantized(matrix: Matrix): matrix is QuantizedMatrix {
  return (matrix as QuantizedMatrix).kind === "quantized";
}

export interface RopeOptions {
  /** Leading features of each head that rotate; the rest pass through. */
  dims: number;
  /** true: rotate interleaved pairs (x0,x1),(x2,x3)…; false: rotate halves (x_i, x_{i+dims/2}). */
  traditional: boolean;
  /** θ base; ignored when `inverseFrequencies` is given. */
  base: number;
  /** Positions are multiplied by this (linear scaling by factor f is scale = 1/f). */
  scale: number;
  /** Per-pair inverse frequencies (dims/2 values), for llama3-style scaling computed by the model. */
  inverseFrequencies?: Float32Array;
}

/** One sequence of a ragged attention batch. */
export interface AttentionSequence {
  /** First row of this sequence's queries in the flattened query tensor. */
  queryStart: number;
  /** Query rows (new tokens) of this sequence in this forward. */
  queryLength: number;
  /** Tokens in the KV cache for this sequence, the new ones included (already written). */
  contextLength: number;
  /** KV blocks holding positions [0, contextLength), in order. */
  blockTable: readonly number[];
}

export interface AttentionOptions {
  /** Multiplies q·k; usually 1/√headDim, Gemma 3 uses query_pre_attn_scalar^-½. */
  scale: number;
  /** Keys older than this many positions before the query are masked (Gemma 3 local layers). */
  slidingWindow: number | null;
}

export type KvStorage = { kind: "float"; dtype: "f32" | "f16" } | { kind: "quantized"; bits: 4 | 8; groupSize: 64 };

export interface KvCacheSpec {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Tokens per block. */
  blockSize: number;
  /** Blocks this store can hold; block ids are 0 … blockCount−1. */
  blockCount: number;
  storage: KvStorage;
}

/**
 * Paged KV storage: fixed-size blocks of K and V for every layer. Which blocks belong to which
 * sequence (block tables, refcounts, copy-on-write) is kept by `PagedKv` in kv-paging.ts, the same
 * for every backend; a backend only stores blocks, writes slots and reads them in attention.
 */
export interface KvCache {
  readonly spec: KvCacheSpec;
  /** Bytes one block takes on the device, all layers and K and V together. */
  readonly bytesPerBlock: number;
  /** Store the K/V of T new tokens of one layer at `slots` (u32 [T], slot = block·blockSize + offset). */
  write(layer: number, keys: Tensor, values: Tensor, slots: Tensor): void;
  /** Copy whole blocks (all layers), e.g. before writing into a block another sequence shares. */
  copyBlocks(pairs: readonly (readonly [source: number, destination: number])[]): void;
  /** The bytes of one block (all layers, K and V) in the backend's storage format. */
  exportBlock(block: number): Promise<Uint8Array>;
  /**
   * exportBlock's bytes of every block in `blocks`, back to back (as a file holds them), read in a
   * few large transfers: an eviction saves thousands of blocks. One array holds them all, so callers
   * ask for at most a few hundred MiB at a time (a typed array holds at most 4 GiB). Into `into` when
   * given (exactly blocks.length · bytesPerBlock bytes, else a rejection), which is returned: memory
   * the caller reuses is faster to fill than new memory, and never has to be collected.
   */
  exportBlocks(blocks: readonly number[], into?: Uint8Array): Promise<Uint8Array>;
  /** Restore a block from exportBlock's bytes; a wrong length is an error, not a guess. */
  importBlock(block: number, bytes: Uint8Array): void;
  /**
   * Restore blocks[i] from bytes [i·bytesPerBlock, (i+1)·bytesPerBlock) — exportBlock's bytes back to
   * back, as a file holds them — in one call, so the backend can batch the uploads (a reload imports
   * thousands of blocks). Resolves when the upload is under way and `bytes` may be reused; work
   * recorded after that sees the blocks (it may wait for room in the backend's staging memory first,
   * which keeps a fast reader from queueing a whole file). A length other than
   * blocks.length · bytesPerBlock, or a block listed twice, rejects and nothing is imported.
   */
  importBlocks(blocks: readonly number[], bytes: Uint8Array): Promise<void>;
  dispose(): void;
}

/** Device-side form of an attention batch, prepared once per forward and used by every layer. */
export interface PreparedAttentionBatch {
  readonly sequences: readonly AttentionSequence[];
  readonly totalQueries: number;
  dispose(): void;
}

/** Every op of the contract, by name: what a model needs and a backend offers are compared by these. */
export const OP_NAMES = [
  "embedding",
  "embedding_quantized",
  "matmul",
  "matmul_quantized",
  "rms_norm",
  "rope",
  "gelu_tanh",
  "silu",
  "add",
  "mul",
  "scale",
  "softmax",
  "attention",
  "argmax",
  "top_k",
  "slice",
  "concat",
  "transpose",
  "kv_cache_float",
  "kv_cache_quantized",
] as const;
export type OpName = (typeof OP_NAMES)[number];

/** An op the backend does not compute, named when a model is loaded. */
export class UnsupportedOpError extends Error {
  override name = "UnsupportedOpError";
  constructor(
    readonly backend: string,
    readonly ops: readonly OpName[],
  ) {
    super(`the ${backend} backend does not implement: ${ops.join(", ")}`);
  }
}

export interface MemoryReport {
  /** Bytes of tensors uploaded as weights. */
  weightsBytes: number;
  /** Bytes of KV-cache blocks allocated. */
  kvCacheBytes: number;
  /** Everything else the backend holds (activations, pools, staging). */
  otherBytes: number;
  /*
   * The backend's own allocator figures, where it keeps them (MLX does; WebGPU leaves them out), so
   * /status and /metrics can show them without knowing the backend.
   */
  /** Bytes of device memory in live allocations now (weights, KV cache and activations together). */
  activeBytes?: number;
  /** The most activeBytes has been since the process started. */
  peakBytes?: number;
  /** Freed buffers the allocator keeps for reuse instead of returning them to the system. */
  cacheBytes?: number;
  /** The allocator's memory limit (for MLX a guideline: evaluation waits for frees before passing it). */
  limitBytes?: number;
}

export type HostArray = Float32Array | Uint32Array | Int32Array | Uint16Array;

export interface Backend {
  readonly name: string;
  /** Human-readable device description (adapter, driver). */
  readonly deviceDescription: string;
  readonly supportedOps: ReadonlySet<OpName>;
  /**
   * Null while the backend can compute; otherwise why not (e.g. the GPU device was lost). The server
   * reports itself unhealthy with this reason instead of crashing.
   */
  readonly failure: string | null;

  /** Copy host data to a new tensor. f16/bf16 take their raw 16-bit patterns (Uint16Array). */
  upload(data: HostArray, shape: readonly number[], dtype: DType, role?: "weights" | "activations"): Tensor;
  /** Execute what the tensor depends on and copy it to the host; f16/bf16 come back as f32. */
  read(tensor: Tensor): Promise<Float32Array | Uint32Array | Int32Array>;
  /** Release a tensor; work already recorded that reads it stays valid. */
  free(tensor: Tensor): void;
  /** Submit recorded work without reading anything back. */
  flush(): Promise<void>;

  /** Rows of `table` [vocab, dim] at `ids` (u32 [T]) → f32 [T, dim]. */
  embedding(table: Matrix, ids: Tensor): Tensor;
  /** x [M, K] · wᵀ with w [N, K] → [M, N]. */
  matmul(x: Tensor, w: Matrix): Tensor;
  /** x [M, N] / rms(x) · weight [N]. */
  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor;
  /** Rotate x [T, heads, headDim] by the positions (i32 [T]) of its tokens. */
  rope(x: Tensor, positions: Tensor, options: RopeOptions): Tensor;
  geluTanh(x: Tensor): Tensor;
  silu(x: Tensor): Tensor;
  /** a + b, where b has a's shape or is one row broadcast over a's rows (a bias). */
  add(a: Tensor, b: Tensor): Tensor;
  /** a ⊙ b, same broadcasting as add. */
  mul(a: Tensor, b: Tensor): Tensor;
  scale(x: Tensor, factor: number): Tensor;
  /** Softmax over the last axis. */
  softmax(x: Tensor): Tensor;
  /** Index of the largest value of each row of x [M, N] → u32 [M] (lowest index on ties). */
  argmax(x: Tensor): Tensor;
  /** The k largest values of each row, descending → values f32 [M, k], indices u32 [M, k]. */
  topK(x: Tensor, k: number): { values: Tensor; indices: Tensor };
  /** A view or copy of x with a new shape of the same size. */
  reshape(x: Tensor, shape: readonly number[]): Tensor;
  /** x[start:end] along `axis`. */
  slice(x: Tensor, axis: number, start: number, end: number): Tensor;
  concat(tensors: readonly Tensor[], axis: number): Tensor;
  transpose(x: Tensor, permutation: readonly number[]): Tensor;

  createKvCache(spec: KvCacheSpec): KvCache;
  prepareAttention(sequences: readonly AttentionSequence[]): PreparedAttentionBatch;
  /**
   * Causal attention of q [T, qHeads, headDim] over the cached keys and values of `layer` (already
   * written for the new tokens) → [T, qHeads, headDim]. qHeads is a multiple of kvHeads (GQA).
   */
  attention(q: Tensor, cache: KvCache, layer: number, batch: PreparedAttentionBatch, options: AttentionOptions): Tensor;

  memory(): MemoryReport;
  dispose(): void;
}

/** Fails, naming every missing op, when a backend cannot run what a model needs. */
export function requireOps(backend: Backend, needed: Iterable<OpName>): void {
  const missing = [...new Set(needed)].filter((op) => !backend.supportedOps.has(op));
  if (missing.length > 0) throw new UnsupportedOpError(backend.name, missing);
}
