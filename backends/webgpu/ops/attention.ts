/**
 * Attention over the paged KV cache (kernels/attention.wgsl, attention_prefill.wgsl,
 * attention_combine.wgsl); the cache itself lives in kv-cache.ts, the batch in attention-batch.ts.
 *
 * Sequences with PREFILL_MIN_ROWS query rows or more go to attention_prefill.wgsl (flash-attention 2,
 * see attention-prefill.ts), the others, and the short tails of the long ones, to attention.wgsl (see
 * attention-decode.ts). A workgroup takes one work item, one kv head (all q heads of its GQA group, or
 * a chunk of them) and one partition of the keys; when a dispatch would have too few workgroups to
 * fill the GPU, long contexts are split into partitions (the same for both kernels) merged by a third
 * kernel (flash-decoding).
 */
import type { AttentionOptions, KvCache, KvCacheSpec, OpName, PreparedAttentionBatch } from "../../contract.js";
import { Params, type Dispatch, type GpuRuntime, type GpuTensor } from "../runtime.js";
import { describeShape } from "./grid.js";
import { WebGpuKvCache } from "./kv-cache.js";
import { checkBlockTables } from "../../kv-checks.js";
import {
  planPrefill,
  planPrefillMatrix,
  WIDE_PREFILL_TARGET_WORKGROUPS,
  wideWorkgroups,
  type PrefillTuning,
} from "./attention-prefill.js";
import { planDecode } from "./attention-decode.js";
import { GpuAttentionBatch, type WorkItems } from "./attention-batch.js";

export { GpuAttentionBatch, prepareAttention } from "./attention-batch.js";

export const IMPLEMENTED_OPS: OpName[] = ["attention", "kv_cache_float", "kv_cache_quantized"];

export function createKvCache(runtime: GpuRuntime, spec: KvCacheSpec): KvCache {
  return new WebGpuKvCache(runtime, spec);
}

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
   * the prefill kernel's shape (planPrefill's defaults otherwise).
   */
  tuning: { targetWorkgroups?: number; prefill?: PrefillTuning } = {},
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
  const matrix =
    runtime.gpu.hasMatrix16 && tuning.prefill?.matrix !== false
      ? planPrefillMatrix(cache.spec, cache.layout, groupSize, tuning.prefill?.matrixKernel)
      : null;
  const prefill =
    batch.prefillItems.get(1)!.count > 0
      ? (matrix ??
        planPrefill(
          cache.spec,
          cache.layout,
          groupSize,
          sharedBytes,
          unroll,
          runtime.gpu.subgroupMinSize,
          runtime.gpu.limits.maxComputeInvocationsPerWorkgroup,
          tuning.prefill,
        ))
      : null;
  const prefillItems = prefill ? batch.prefillItems.get(prefill.rowsPerItem)! : null;
  const beside = prefill ? batch.besidePrefill.get(prefill.rowsPerItem)! : null;
  const plan = planDecode(
    cache.spec,
    cache.layout,
    groupSize,
    beside ? beside.maxRows : batch.maxQueryLength,
    runtime.gpu.subgroupMinSize,
  );
  const decodeItems = (beside ? beside.items : batch.items).get(plan.rowsPerItem)!;
  // Keys are split to fill the GPU with the workgroups that carry the work: the prefill kernel's and
  // the decode kernel's for short sequences (a continuous batch's decode steps), but not the few
  // tails of long sequences, which take a fraction of the time and would otherwise move the split
  // for the whole dispatch (a 65th row on the decode kernel made 64 rows run in 16 partitions, not 32).
  const tailItems = beside ? beside.tailItems.get(plan.rowsPerItem)! : 0;
  const workgroupsPerPartition =
    kvHeads *
    ((decodeItems.count - tailItems) * plan.headChunks + (prefillItems ? prefillItems.count * prefill!.headChunks : 0));
  const partitions = choosePartitions(
    batch,
    prefillItems ? [decodeItems, prefillItems] : [decodeItems],
    window,
    tuning.targetWorkgroups ??
      (prefill && wideWorkgroups(prefill) ? WIDE_PREFILL_TARGET_WORKGROUPS : TARGET_WORKGROUPS),
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
  const { keys, values } = cache.layer(layer);
  const bindings = [q, keys, values, batch.buffer, out, partials];
  const dispatches: Dispatch[] = [];
  if (prefill && prefillItems!.count > 0) {
    dispatches.push({
      file: prefill.file,
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
      constants: plan.constants,
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
        .f32(options.scale),
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
