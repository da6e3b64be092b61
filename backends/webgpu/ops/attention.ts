/**
 * Attention over the paged KV cache (kernels/attention.wgsl, attention_combine.wgsl); the cache itself
 * lives in kv-cache.ts.
 *
 * prepareAttention uploads the batch once per forward: each sequence's query rows, context length
 * and block table, plus work-item lists (rows of one sequence grouped 1, 2, 4, 8 or 16 at a time for
 * the decode kernel, up to 64 for the prefill kernel) so every layer's dispatch only picks a list.
 * Sequences with PREFILL_MIN_ROWS query rows or more go to attention_prefill.wgsl (flash-attention 2,
 * see attention-prefill.ts), the others to attention.wgsl; which kernel a sequence gets depends on
 * its own rows only. A workgroup takes one work item, one kv head (all q heads of its GQA group, or a
 * chunk of them) and one partition of the keys; when a dispatch would have too few workgroups to fill
 * the GPU, long contexts are split into partitions (the same for both kernels) merged by a third
 * kernel (flash-decoding).
 */
import type {
  AttentionOptions,
  AttentionSequence,
  KvCache,
  KvCacheSpec,
  OpName,
  PreparedAttentionBatch,
} from "../../contract.js";
import { Params, type Dispatch, type GpuRuntime, type GpuTensor } from "../runtime.js";
import { describeShape } from "./grid.js";
import { WebGpuKvCache, kernelConstants, type KvLayout } from "./kv-cache.js";
import { checkBlockTables } from "../../kv-checks.js";
import { PREFILL_MIN_ROWS, PREFILL_ROWS_CHOICES, largestPowerOfTwoAtMost, planPrefill } from "./attention-prefill.js";

export const IMPLEMENTED_OPS: OpName[] = ["attention", "kv_cache_float", "kv_cache_quantized"];

export function createKvCache(runtime: GpuRuntime, spec: KvCacheSpec): KvCache {
  return new WebGpuKvCache(runtime, spec);
}

const ROWS_PER_ITEM_CHOICES = [1, 2, 4, 8, 16] as const;
/** Keys per tile of the kernel, one per thread of its workgroup. */
const TILE = 128;
/** Enough workgroups to keep a large GPU busy; below this, long contexts are split. */
const TARGET_WORKGROUPS = 1024;
/*
 * Prefill-kernel dispatches use the same target: finer splits cost that kernel more than they gain.
 * On an H200 (bench/attention.ts, partition sweep; 64 rows, headDim 64, 32K context) 8 partitions ran
 * 1297 µs, 32 (this target) 1385, 128 1737: each workgroup stages its queries and writes partials,
 * and the combine pass grows with the partitions. Fewer partitions would help that case further but
 * also split the decode rows that share a dispatch less; not changed without measuring those.
 */
const MIN_PARTITION = 128;
/** Partition size meaning "one partition": larger than any position. */
const WHOLE_CONTEXT = 2 ** 30;
const MAX_PARTIAL_BYTES = 256 * 2 ** 20;

interface WorkItems {
  /** Word offset of the list in the batch buffer. */
  at: number;
  count: number;
  /** Per item: sequence index, first row within the sequence, row count (as uploaded). */
  words: Uint32Array;
}

export class GpuAttentionBatch implements PreparedAttentionBatch {
  readonly totalQueries: number;
  readonly maxQueryLength: number;
  /** Decode-kernel lists over every sequence (used where the prefill kernel does not apply). */
  readonly items = new Map<number, WorkItems>();
  /** Decode-kernel lists over the sequences below `prefillMinRows`, and their longest query. */
  readonly shortItems = new Map<number, WorkItems>();
  readonly maxShortQueryLength: number;
  /** Prefill-kernel lists over the sequences with `prefillMinRows` query rows or more. */
  readonly prefillItems = new Map<number, WorkItems>();
  /** Caches whose blockCount/blockSize this batch's tables were checked against. */
  readonly checkedCaches = new WeakSet<KvCache>();
  readonly buffer: GpuTensor;
  private disposed = false;

  constructor(
    private readonly runtime: GpuRuntime,
    readonly sequences: readonly AttentionSequence[],
    /** Benchmarks set it to compare the kernels on the same rows (1: all prefill; Infinity: none). */
    readonly prefillMinRows = PREFILL_MIN_ROWS,
  ) {
    this.totalQueries = checkQueryRows(sequences);
    this.maxQueryLength = Math.max(0, ...sequences.map((sequence) => sequence.queryLength));
    const long = (sequence: AttentionSequence) => sequence.queryLength >= prefillMinRows;
    this.maxShortQueryLength = Math.max(0, ...sequences.filter((s) => !long(s)).map((s) => s.queryLength));
    const words: number[] = [];
    const tablesAt = 4 * sequences.length;
    let tableAt = tablesAt;
    for (const sequence of sequences) {
      words.push(sequence.queryStart, sequence.queryLength, sequence.contextLength, tableAt);
      tableAt += sequence.blockTable.length;
    }
    for (const sequence of sequences) for (const block of sequence.blockTable) words.push(block);
    const addLists = (
      target: Map<number, WorkItems>,
      choices: readonly number[],
      keep: (s: AttentionSequence) => boolean,
    ) => {
      for (const rows of choices) {
        const list: number[] = [];
        sequences.forEach((sequence, index) => {
          if (!keep(sequence)) return;
          for (let first = 0; first < sequence.queryLength; first += rows) {
            list.push(index, first, Math.min(rows, sequence.queryLength - first));
          }
        });
        target.set(rows, { at: words.length, count: list.length / 3, words: Uint32Array.from(list) });
        for (const word of list) words.push(word);
      }
    };
    addLists(this.items, ROWS_PER_ITEM_CHOICES, () => true);
    addLists(this.shortItems, ROWS_PER_ITEM_CHOICES, (sequence) => !long(sequence));
    addLists(this.prefillItems, PREFILL_ROWS_CHOICES, long);
    // Submitting first keeps the upload (a queue write, which runs ahead of unsubmitted work) from
    // overtaking work recorded against the recycled buffer. Recycling keeps bind groups cached.
    runtime.submit();
    this.buffer = runtime.allocate([words.length], "u32");
    runtime.upload(this.buffer, Uint32Array.from(words));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.runtime.release(this.buffer);
  }

  get live(): boolean {
    return !this.disposed;
  }
}

/** The rows of the sequences must tile [0, total) exactly, as the flattened layout says. */
function checkQueryRows(sequences: readonly AttentionSequence[]): number {
  const sorted = [...sequences].filter((s) => s.queryLength > 0).sort((a, b) => a.queryStart - b.queryStart);
  let next = 0;
  for (const sequence of sequences) {
    const { queryStart, queryLength, contextLength, blockTable } = sequence;
    const fields = [queryStart, queryLength, contextLength, ...blockTable];
    if (!fields.every((value) => Number.isInteger(value) && value >= 0 && value < 2 ** 31)) {
      throw new Error(`prepareAttention: sequence fields must be non-negative integers: ${JSON.stringify(sequence)}`);
    }
    if (queryLength > contextLength) {
      throw new Error(`prepareAttention: queryLength ${queryLength} exceeds contextLength ${contextLength}`);
    }
  }
  for (const { queryStart, queryLength } of sorted) {
    if (queryStart !== next) {
      throw new Error(
        `prepareAttention: query rows must be contiguous from 0; a sequence starts at ${queryStart}, expected ${next}`,
      );
    }
    next += queryLength;
  }
  return next;
}

export function prepareAttention(
  runtime: GpuRuntime,
  sequences: readonly AttentionSequence[],
  prefillMinRows = PREFILL_MIN_ROWS,
): GpuAttentionBatch {
  return new GpuAttentionBatch(runtime, sequences, prefillMinRows);
}

/** How one attention dispatch is cut into workgroups. */
interface AttentionPlan {
  headsPerChunk: number;
  headChunks: number;
  rowsPerItem: number;
  maxVectors: number;
}

/**
 * Query vectors per workgroup (rows × q heads of one kv head). Bounded by the kernel's registers
 * (Σ p·v of every vector for a thread's value words: at most 64 floats, at most 16 vectors) and by
 * workgroup memory (queries, scores and probabilities of every vector).
 */
export function planWorkgroups(
  headDim: number,
  groupSize: number,
  maxQueryLength: number,
  layout: KvLayout,
  sharedBytes: number,
): AttentionPlan {
  if (layout.rowWords % 4 !== 0) {
    throw new Error(
      `attention: the kernel reads keys 4 storage words at a time; headDim ${headDim} gives ${layout.rowWords}`,
    );
  }
  const wordsPerThread = Math.ceil(layout.rowWords / TILE);
  const vectorCap = Math.min(16, Math.floor(2048 / headDim), Math.floor(64 / (wordsPerThread * layout.valuesPerWord)));
  if (vectorCap < 1) throw new Error(`attention: headDim ${headDim} is larger than this kernel supports`);
  const headsPerChunk = Math.min(groupSize, vectorCap);
  const rowsPerItem = Math.min(
    largestPowerOfTwoAtMost(vectorCap / headsPerChunk),
    2 ** Math.ceil(Math.log2(Math.max(1, maxQueryLength))),
    16,
  );
  const maxVectors = rowsPerItem * headsPerChunk;
  const floats = maxVectors * headDim + maxVectors * TILE + maxVectors * Math.max(TILE, headDim) + 2 * TILE;
  if (floats * 4 > sharedBytes) {
    throw new Error(
      `attention: headDim ${headDim} needs ${floats * 4} bytes of workgroup memory, this device has ${sharedBytes}`,
    );
  }
  return { headsPerChunk, headChunks: Math.ceil(groupSize / headsPerChunk), rowsPerItem, maxVectors };
}

/** A Vulkan on the CPU (lavapipe, SwiftShader), whose compiler is slow on unrolled kernels. */
function cpuVulkan(runtime: GpuRuntime): boolean {
  return runtime.gpu.isCpuAdapter;
}

/** Partitions a work item's visible keys fall into, partitions aligned to multiples of `size`. */
function partitionsNeeded(batch: GpuAttentionBatch, lists: WorkItems[], window: number, size: number): number {
  let most = 0;
  for (const items of lists)
    for (let i = 0; i < items.count; i++) {
      const sequence = batch.sequences[items.words[3 * i]!]!;
      const first = sequence.contextLength - sequence.queryLength + items.words[3 * i + 1]!;
      const last = first + items.words[3 * i + 2]! - 1;
      const lowest = window > 0 && first >= window ? first - window + 1 : 0;
      most = Math.max(most, Math.floor(last / size) - Math.floor(lowest / size) + 1);
    }
  return most;
}

function choosePartitions(
  batch: GpuAttentionBatch,
  items: WorkItems[],
  window: number,
  target: number,
  workgroupsPerPartition: number,
  partialBytesPerPartition: number,
  maxBindingBytes: number,
): { size: number; count: number } {
  const whole = { size: WHOLE_CONTEXT, count: 1 };
  if (workgroupsPerPartition * 2 > target) return whole;
  let size = MIN_PARTITION;
  let count = partitionsNeeded(batch, items, window, size);
  const partialLimit = Math.min(MAX_PARTIAL_BYTES, maxBindingBytes);
  while (count > 1 && (workgroupsPerPartition * count > target || partialBytesPerPartition * count > partialLimit)) {
    size *= 2;
    count = partitionsNeeded(batch, items, window, size);
  }
  return count > 1 ? { size, count } : whole;
}

/** The dispatches of one attention call, with the tensors they write (benchmarks replay them). */
export interface PlannedAttention {
  dispatches: Dispatch[];
  out: GpuTensor;
  /** Per-partition results, [1] when the keys are not split; free once the dispatches are recorded. */
  partials: GpuTensor;
  partitions: number;
}

export function attention(
  runtime: GpuRuntime,
  q: GpuTensor,
  cache: KvCache,
  layer: number,
  batch: PreparedAttentionBatch,
  options: AttentionOptions,
): GpuTensor {
  const planned = planAttention(runtime, q, cache, layer, batch, options);
  for (const work of planned.dispatches) runtime.dispatch(work);
  runtime.release(planned.partials);
  return planned.out;
}

export function planAttention(
  runtime: GpuRuntime,
  q: GpuTensor,
  cache: KvCache,
  layer: number,
  batch: PreparedAttentionBatch,
  options: AttentionOptions,
  /**
   * Benchmarks only: the workgroup count below which keys are split (TARGET_WORKGROUPS otherwise), and
   * the most query vectors a prefill workgroup takes (planPrefill's default otherwise).
   */
  tuning: { targetWorkgroups?: number; prefillVectors?: number } = {},
): PlannedAttention {
  if (!(cache instanceof WebGpuKvCache)) throw new Error("attention: the KV cache belongs to another backend");
  if (!(batch instanceof GpuAttentionBatch)) throw new Error("attention: the batch was prepared by another backend");
  if (!batch.live) throw new Error("attention: the prepared batch was used after dispose()");
  const { kvHeads, headDim, blockSize, layers } = cache.spec;
  const [tokens, qHeads] = q.shape;
  const expected = `[${batch.totalQueries}, qHeads (a multiple of ${kvHeads}), ${headDim}]`;
  if (
    q.dtype !== "f32" ||
    q.shape.length !== 3 ||
    tokens !== batch.totalQueries ||
    q.shape[2] !== headDim ||
    !qHeads ||
    qHeads % kvHeads !== 0
  ) {
    throw new Error(`attention: q must be f32 ${expected}, got ${q.dtype} ${describeShape(q.shape)}`);
  }
  if (!Number.isInteger(layer) || layer < 0 || layer >= layers)
    throw new Error(`attention: layer ${layer} is outside 0…${layers - 1}`);
  if (!Number.isFinite(options.scale)) throw new Error(`attention: scale must be finite, got ${options.scale}`);
  const window = options.slidingWindow ?? 0;
  if (!Number.isInteger(window) || window < 0 || options.slidingWindow === 0) {
    throw new Error(
      `attention: slidingWindow must be a positive integer or null, got ${String(options.slidingWindow)}`,
    );
  }
  if (!batch.checkedCaches.has(cache)) {
    checkBlockTables(batch.sequences, cache.spec);
    batch.checkedCaches.add(cache);
  }
  const out = runtime.allocate([tokens, qHeads, headDim], "f32");
  if (tokens === 0) return { dispatches: [], out, partials: runtime.allocate([1], "f32"), partitions: 0 };

  const unroll = !cpuVulkan(runtime);
  const sharedBytes = runtime.gpu.limits.maxComputeWorkgroupStorageSize;
  const groupSize = qHeads / kvHeads;
  const prefill =
    batch.prefillItems.get(1)!.count > 0
      ? planPrefill(
          cache.spec,
          cache.layout,
          groupSize,
          sharedBytes,
          unroll,
          runtime.gpu.subgroupMinSize,
          tuning.prefillVectors,
        )
      : null;
  const prefillItems = prefill ? batch.prefillItems.get(prefill.rowsPerItem)! : null;
  const decodeRows = prefill ? batch.maxShortQueryLength : batch.maxQueryLength;
  const plan = planWorkgroups(headDim, groupSize, Math.max(1, decodeRows), cache.layout, sharedBytes);
  const decodeItems = (prefill ? batch.shortItems : batch.items).get(plan.rowsPerItem)!;
  const workgroupsPerPartition =
    kvHeads * (decodeItems.count * plan.headChunks + (prefill ? prefillItems!.count * prefill.headChunks : 0));
  const partitions = choosePartitions(
    batch,
    prefillItems ? [decodeItems, prefillItems] : [decodeItems],
    window,
    tuning.targetWorkgroups ?? TARGET_WORKGROUPS,
    workgroupsPerPartition,
    tokens * qHeads * (headDim + 2) * 4,
    runtime.maxBindingBytes,
  );
  const itemCount = Math.max(decodeItems.count, prefillItems?.count ?? 0);
  if (itemCount > 65535 || tokens > 65535 || kvHeads * Math.max(plan.headChunks, prefill?.headChunks ?? 1) > 65535) {
    throw new Error(
      `attention: ${tokens} query rows in ${itemCount} work items exceed the dispatch grid; split the batch`,
    );
  }
  const partials = runtime.allocate(
    partitions.count > 1 ? [tokens, qHeads, partitions.count, headDim + 2] : [1],
    "f32",
  );
  const bindings = [q, cache.keys[layer]!, cache.values[layer]!, batch.buffer, out, partials];
  const dispatches: Dispatch[] = [];
  if (prefill && prefillItems!.count > 0) {
    dispatches.push({
      file: "attention_prefill.wgsl",
      entryPoint: "attend",
      constants: prefill.constants,
      params: new Params()
        .u32(qHeads)
        .u32(kvHeads)
        .u32(prefill.headsPerChunk)
        .u32(prefill.headChunks)
        .u32(blockSize)
        .u32(window)
        .u32(partitions.size)
        .u32(partitions.count)
        .u32(prefillItems!.at)
        .f32(options.scale)
        .u32(prefill.chunkDims)
        .u32(prefill.chunkKeys),
      bindings,
      workgroups: [partitions.count, prefillItems!.count, kvHeads * prefill.headChunks],
    });
  }
  if (decodeItems.count > 0) {
    dispatches.push({
      file: "attention.wgsl",
      entryPoint: "attend",
      constants: {
        ...kernelConstants(cache.spec, cache.layout),
        MAX_VECTORS: plan.maxVectors,
        UNROLL: unroll ? 1 : 0,
      },
      params: new Params()
        .u32(qHeads)
        .u32(kvHeads)
        .u32(plan.headsPerChunk)
        .u32(plan.headChunks)
        .u32(blockSize)
        .u32(window)
        .u32(partitions.size)
        .u32(partitions.count)
        .u32(decodeItems.at)
        .f32(options.scale)
        .u32(cache.layout.rowWords)
        .u32(plan.maxVectors)
        .u32(cache.layout.valuesPerWord),
      bindings,
      workgroups: [partitions.count, decodeItems.count, kvHeads * plan.headChunks],
    });
  }
  if (partitions.count > 1) {
    dispatches.push({
      file: "attention_combine.wgsl",
      entryPoint: "combine",
      params: new Params().u32(qHeads).u32(headDim).u32(partitions.count),
      bindings: [partials, out],
      workgroups: [qHeads, tokens],
    });
  }
  return { dispatches, out, partials, partitions: partitions.count };
}
