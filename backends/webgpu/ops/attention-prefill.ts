/**
 * How kernels/attention_prefill.wgsl (flash-attention 2 over the paged KV cache) is cut into
 * workgroups, and when attention.ts hands a sequence's rows to it instead of the decode kernel.
 *
 * A workgroup owns BLOCK_M query vectors (rows of one sequence × q heads of one kv head); each thread
 * owns 4 vectors × 4 keys of a score tile and 4 vectors × 8 dimensions of the output, so the kernel's
 * shape follows headDim: HEAD_DIM / 8 threads across, tiles of HEAD_DIM / 2 keys, and BLOCK_M up to
 * 128 vectors in at most 512 threads where the device allows them, 256 otherwise (128 vectors up to
 * headDim 128, 64 at 256; with 256 threads, 64 at 128 and 32 at 256).
 *
 * Its workgroup memory (the probabilities and the K/V staging buffer) is held to WORKGROUP_BYTES per
 * 256 threads, so that a GPU core holds as many threads as with two workgroups of 256.
 */
import type { KvCacheSpec } from "../../contract.js";
import { kernelConstants, type KvLayout } from "./kv-cache.js";

/**
 * Sequences with at least this many query rows in a dispatch go to the prefill kernel; fewer stay with
 * the decode kernel (attention.wgsl). Measured on an H200 (bench/attention.ts, "few rows" sweep at 8K
 * tokens of context, f16 KV, 32 q / 8 kv heads, after the decode kernel's rewrite): at headDim 128 the
 * decode kernel takes 42, 61, 71, 91 µs for 1–4 rows against the prefill kernel's flat 136–138, and
 * they meet at 8 rows (148 vs 143); at headDim 64, 36–59 µs against 98 for 1–4 rows, 87 vs 101 at 8,
 * and at 16 rows the prefill kernel wins at both (162 vs 264, 110 vs 144). A prefill work item costs
 * about the same however few of its rows are filled, while the decode kernel reads every key once
 * more for each quad of vectors, so both scale with the context alike and the crossing point stays.
 */
export const PREFILL_MIN_ROWS = 8;

/** Rows per work item the batch prepares lists for (the plan picks one from the head group size). */
export const PREFILL_ROWS_CHOICES = [1, 2, 4, 8, 16, 32, 64] as const;

/**
 * Workgroup memory per 256 threads of a workgroup (per workgroup, for smaller ones), at most: two
 * workgroups of 256 threads share a GPU core where it has least, or one of 512. An H200 through Dawn
 * (Vulkan) ran two workgroups of 24 KiB per SM side by side and three of 16, but only one of 26–32 KiB
 * (bench/occupancy.ts, bench/attention.ts --occupancy; bench/RESULTS.md). The kernel kept 16 KiB of
 * queries in workgroup memory before, 35–43 KiB in all: one workgroup of four warps per SM, which left
 * the SM waiting on latency.
 */
const WORKGROUP_BYTES = 24 * 1024;
/**
 * Largest workgroup, in threads, where the device allows it (WebGPU's default is 256). At headDim 128
 * a workgroup of 128 vectors in 512 threads and 48 KiB (one per SM, as many warps as two of 256)
 * ran 1.06–1.10× faster than two of 64 vectors in 256 threads and 24 KiB on an H200 (bench/attention.ts
 * --partitions --shapes, 16K and 32K keys, 64, 65 and 512 rows; bench/RESULTS.md): each staged key
 * serves twice the vectors, and the staging buffer takes twice the keys per barrier.
 */
const MAX_THREADS = 512;
/** Threads every WebGPU device runs in one workgroup. */
const DEFAULT_MAX_THREADS = 256;
/**
 * Most query vectors per workgroup. 128 at headDim 64 (256 threads, 24 KiB) ran 1.17–1.26× faster than
 * 64 on an H200 at its best split (bench/attention.ts --partitions --prefill-vectors=64|128, 8K–32K
 * keys, 64, 65 and 512 rows; bench/RESULTS.md): each staged key serves twice the vectors.
 */
export const PREFILL_MAX_VECTORS = 128;
/**
 * Workgroups a prefill of wide workgroups (more than 64 vectors or 256 threads: `wideWorkgroups`) is
 * split to fill (attention.ts splits keys below it; TARGET_WORKGROUPS for the rest). Those workgroups
 * carry twice the work: 256–384 were best in the H200's sweeps for 64 and 65 rows (headDim 64 with
 * 128 vectors, 128 with 128 vectors in 512 threads, 256 with 64 in 512), 1024 lost up to 20%; 512
 * rows did not care.
 */
export const WIDE_PREFILL_TARGET_WORKGROUPS = 384;

/**
 * Whether a plan's workgroups are split to WIDE_PREFILL_TARGET_WORKGROUPS. The matrix kernel's are too:
 * at 384 (8 partitions for 64 rows over 8K–32K keys) it ran 1.11–1.55× faster than at 1024 (32
 * partitions) on an H200 (bench/results/attention-h200-mma-6.json).
 */
export function wideWorkgroups(plan: PrefillPlan): boolean {
  return plan.blockM > 64 || plan.threads > 256 || plan.file !== FLOAT_KERNEL;
}

const MATRIX_KERNEL = "attention_prefill_mma.wgsl";
const FLOAT_KERNEL = "attention_prefill.wgsl";
/** Largest staging buffer for key and value chunks, in floats. */
const MAX_STAGE_FLOATS = 4096;
/** Units (4 values of a row) a thread fetches per staging step: the kernel's MAX_UNITS. */
const MAX_UNITS_PER_THREAD = 8;

/** Benchmarks only: the kernel's shape other than the defaults above. */
export interface PrefillTuning {
  /** The most query vectors a workgroup takes (a multiple of 4). */
  maxVectors?: number;
  /** Largest workgroup, in threads (at most the device's maxComputeInvocationsPerWorkgroup). */
  maxThreads?: number;
  /** Workgroup memory per workgroup, at most. */
  workgroupBytes?: number;
  /** false: the f32 kernel even where the matrix kernel applies (A/B runs). */
  matrix?: boolean;
  /** Another build of the matrix kernel, by file name in kernels/ (A/B runs of a change to it). */
  matrixKernel?: string;
}

export interface PrefillPlan {
  /** The kernel: attention_prefill.wgsl, or attention_prefill_mma.wgsl on matrix units. */
  file: string;
  headsPerChunk: number;
  headChunks: number;
  rowsPerItem: number;
  blockM: number;
  threads: number;
  chunkDims: number;
  chunkKeys: number;
  /** Pipeline constants besides the cache's own. */
  constants: Record<string, number>;
}

export function largestPowerOfTwoAtMost(value: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(1, value)));
}

/** Largest d ≤ limit with d | n and d a multiple of `step` (0 if none). */
function largestDivisor(n: number, limit: number, step: number): number {
  for (let d = Math.floor(limit / step) * step; d >= step; d -= step) if (n % d === 0) return d;
  return 0;
}

/**
 * The kernel's shape for this head size, or null where it does not apply (headDim not a multiple of
 * 8, or more workgroup memory than the device has): those rows stay with the decode kernel. The
 * widest workgroup that fits: where 128 vectors' probabilities alone fill the device's workgroup
 * memory, half as many.
 */
export function planPrefill(
  spec: KvCacheSpec,
  layout: KvLayout,
  groupSize: number,
  sharedBytes: number,
  unroll: boolean,
  /** Smallest subgroup the device may run (0 without subgroups): shuffles need ≥ headDim / 8 lanes. */
  subgroupMinSize = 0,
  /** The device's maxComputeInvocationsPerWorkgroup. */
  deviceMaxThreads = DEFAULT_MAX_THREADS,
  tuning: PrefillTuning = {},
): PrefillPlan | null {
  const keyThreads = spec.headDim / 8;
  const maxThreads = tuning.maxThreads ?? Math.min(MAX_THREADS, deviceMaxThreads);
  if (spec.headDim % 8 !== 0 || keyThreads > maxThreads / 4) return null;
  let vectorCap = Math.min(tuning.maxVectors ?? PREFILL_MAX_VECTORS, (maxThreads / keyThreads) * 4);
  for (; vectorCap >= 4; vectorCap /= 2) {
    const plan = shapePrefill(spec, layout, groupSize, sharedBytes, unroll, subgroupMinSize, vectorCap, tuning);
    if (plan) return plan;
  }
  return null;
}

function shapePrefill(
  spec: KvCacheSpec,
  layout: KvLayout,
  groupSize: number,
  sharedBytes: number,
  unroll: boolean,
  subgroupMinSize: number,
  vectorCap: number,
  tuning: PrefillTuning,
): PrefillPlan | null {
  const { headDim } = spec;
  const keyThreads = headDim / 8;
  const tileKeys = 4 * keyThreads;
  const headsPerChunk = Math.min(groupSize, vectorCap);
  const rowsPerItem = Math.min(64, largestPowerOfTwoAtMost(Math.floor(vectorCap / headsPerChunk)));
  const blockM = Math.ceil((rowsPerItem * headsPerChunk) / 4) * 4;
  const threads = (blockM / 4) * keyThreads;
  const fixedFloats = blockM * tileKeys;
  const workgroupBytes = tuning.workgroupBytes ?? WORKGROUP_BYTES * Math.max(1, threads / 256);
  const sharedBudget = Math.min(sharedBytes, workgroupBytes);
  const available = Math.min(
    MAX_STAGE_FLOATS,
    Math.floor(sharedBudget / 4) - fixedFloats,
    tileKeys * headDim,
    threads * MAX_UNITS_PER_THREAD * 4,
  );
  // Keys are staged in chunks of whole 4-dimension groups, values in chunks of 4 whole rows (the
  // kernel steps through both 4 at a time).
  const chunkDims = largestDivisor(headDim, available / tileKeys, 4);
  const chunkKeys = largestDivisor(tileKeys, available / headDim, 4);
  if (chunkDims === 0 || chunkKeys === 0) return null;
  const stageFloats = Math.max(tileKeys * chunkDims, chunkKeys * headDim);
  return {
    file: FLOAT_KERNEL,
    headsPerChunk,
    headChunks: Math.ceil(groupSize / headsPerChunk),
    rowsPerItem,
    blockM,
    threads,
    chunkDims,
    chunkKeys,
    constants: {
      ...kernelConstants(spec, layout),
      BLOCK_M: blockM,
      STAGE_VEC4S: stageFloats / 4,
      CHUNK_DIMS: chunkDims,
      CHUNK_KEYS: chunkKeys,
      UNROLL: unroll ? 1 : 0,
      // The shuffles pair lanes by XOR, which stays inside aligned groups of a power of two only.
      SUBGROUP_MAX: subgroupMinSize >= keyThreads && (keyThreads & (keyThreads - 1)) === 0 ? 1 : 0,
    },
  };
}

/** Query vectors of attention_prefill_mma.wgsl's workgroups of 128 threads. */
const MATRIX_BLOCK_M = 64;

/**
 * attention_prefill_mma.wgsl's shape, where it applies: a device with 16×16 f16 subgroup matrices
 * (`GpuDevice.hasMatrix16`), an f16 cache, headDim 64 or 128 (its output matrices stay in registers);
 * null elsewhere (planPrefill's kernel then).
 */
export function planPrefillMatrix(
  spec: KvCacheSpec,
  layout: KvLayout,
  groupSize: number,
  file = MATRIX_KERNEL,
): PrefillPlan | null {
  // Its matrix loads read 16 keys' rows in a row from the cache: a block must hold whole groups of 16.
  if (layout.storageCode !== 1 || (spec.headDim !== 64 && spec.headDim !== 128) || spec.blockSize % 16 !== 0) {
    return null;
  }
  const headsPerChunk = Math.min(groupSize, MATRIX_BLOCK_M);
  const rowsPerItem = Math.min(64, largestPowerOfTwoAtMost(Math.floor(MATRIX_BLOCK_M / headsPerChunk)));
  return {
    file,
    headsPerChunk,
    headChunks: Math.ceil(groupSize / headsPerChunk),
    rowsPerItem,
    blockM: MATRIX_BLOCK_M,
    threads: 128,
    chunkDims: 0,
    chunkKeys: 0,
    constants: kernelConstants(spec, layout),
  };
}
