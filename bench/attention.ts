/**
 * Attention over the paged KV cache, two parts.
 *
 * Decode: against the memory bandwidth it can hope for, a saturating-read kernel
 * (kernels/bench_read.wgsl) measured in the same run, then one query row per sequence for batch 1
 * and 8 at 1K, 8K and 32K tokens of context, in a Llama-3-8B layer's shape (32 q heads, 8 kv heads,
 * headDim 128) with f16 KV storage and 16-token blocks, handed out round-robin so block tables
 * interleave as a busy server's do. GB/s counts the K and V bytes of the context read per call
 * (batch · context · 8 · 128 · 2 B · 2); "% read" compares with the read kernel. Calls cycle through
 * copies of the batch (other blocks of the same cache) that together exceed the GPU's L2 cache, so
 * keys and values come from memory. "attend µs" is the attention kernel alone, without the pass that
 * merges the partitions of split keys.
 *
 * Prefill: the prefill kernel (attention_prefill.wgsl) against the decode kernel (attention.wgsl) on
 * the same rows in the same run: one sequence with 64 or 512 new query rows at the end of 1K, 8K and
 * 32K tokens of context, and a whole 4K causal prompt, in the shapes of Llama-3-8B (headDim 128) and
 * Llama-3.2-1B (32 q heads, 8 kv heads, headDim 64); then a sweep over 1–16 rows at 8K that sets
 * PREFILL_MIN_ROWS. TFLOP/s counts 4·headDim flops per visible (query head, key) pair (q·k and p·v);
 * "max diff" is the largest difference of the two kernels' outputs relative to the largest output;
 * "parts" the key partitions of the prefill kernel's dispatch. Then a hot follow-up's 65 rows at 8K–32K
 * in both shapes: the 65th row on the decode kernel (as planned), against as a fifth prefill work
 * item, and 64 rows. Last, a sweep over the workgroup target that sets how finely the keys are split
 * for the prefill kernel (64, 65 and 512 rows, both shapes, 8K–32K).
 *
 * Timing (bench/lib/gpu-timing.ts): with timestamp-query, "µs/call" is the median of calls each alone
 * in a compute pass and "stream µs" the time per call of many back to back; without it, wall-clock.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist && node dist/bench/attention.js [--quick] [--name=NAME]
 * --quick: small contexts and few iterations (for a CPU Vulkan such as lavapipe); --name: the device's
 * name in the output file; --prefill / --decode / --partitions (the partition sweep) / --occupancy
 * (workgroups the GPU runs at once) / --tail (the 65th row's kernel): that part only;
 * --decode-target=N: the decode part's workgroup target (where keys are split); the partition sweep's
 * --rows=…, --contexts=…, --targets=…, --head-dims=64,128[,256] (comma-separated), --shapes=… (below),
 * --prefill-vectors=N.
 * Writes bench/results/attention-<device>.json.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KvCacheSpec } from "../backends/contract.js";
import { PagedKv } from "../backends/kv-paging.js";
import { planAttention, prepareAttention, type PlannedAttention } from "../backends/webgpu/ops/attention.js";
import { PREFILL_MAX_VECTORS } from "../backends/webgpu/ops/attention-prefill.js";
import { WebGpuKvCache } from "../backends/webgpu/ops/kv-cache.js";
import { GpuRuntime, type GpuTensor } from "../backends/webgpu/runtime.js";
import { callMicros, measureRead } from "./lib/read-baseline.js";
import { option } from "./lib/options.js";
import { DispatchTimer, benchDevice, type Call } from "./lib/gpu-timing.js";

const quick = process.argv.includes("--quick");
const deviceName = process.argv.find((option) => option.startsWith("--name="))?.slice("--name=".length);
/** --prefill-vectors=N: the most query vectors per prefill workgroup in the partition and occupancy sweeps. */
/** --decode-target=N: the workgroup count below which the decode part's keys are split (the planner's default otherwise). */
const decodeTarget = process.argv
  .find((option) => option.startsWith("--decode-target="))
  ?.slice("--decode-target=".length);
const prefillVectors = Number(
  process.argv.find((option) => option.startsWith("--prefill-vectors="))?.slice("--prefill-vectors=".length) ??
    PREFILL_MAX_VECTORS,
);
/**
 * --shapes=V/T/B,…: the partition sweep in each of these prefill kernel shapes, each the most vectors
 * per workgroup, most threads and most workgroup bytes (PrefillTuning); the planner's shape (with
 * --prefill-vectors) otherwise. `f32` stands for the f32 kernel where the planner would take the matrix
 * kernel (attention_prefill_mma.wgsl), `planned` for the planner's choice: `--shapes=f32,planned`; a
 * file name for another build of the matrix kernel in kernels/ (`--shapes=planned,copy.wgsl`).
 */
const prefillShapes = option("shapes")
  ?.split(",")
  .map((spec) => {
    // "f32": the f32 kernel as planned, even where the matrix kernel applies; "planned": the planner's.
    if (spec === "f32") return { name: spec, tuning: { maxVectors: prefillVectors, matrix: false } };
    if (spec === "planned") return { name: spec, tuning: { maxVectors: prefillVectors } };
    // "file.wgsl": the matrix kernel built from this file in kernels/ (an A/B copy of it).
    if (spec.endsWith(".wgsl")) return { name: spec, tuning: { maxVectors: prefillVectors, matrixKernel: spec } };
    const [maxVectors, maxThreads, workgroupBytes] = spec.split("/").map(Number);
    return { name: spec, tuning: { maxVectors, maxThreads, workgroupBytes } };
  }) ?? [null];

const MiB = 1 << 20;
const SHAPE = { qHeads: 32, kvHeads: 8, headDim: 128, blockSize: 16 };
const CONTEXTS = quick ? [256, 1024] : [1024, 8192, 32768];
const BATCHES = [1, 8];
/** Copies of a batch to cycle through: together past any L2 (50 MiB on an H200). */
const ROTATION_BYTES = quick ? 0 : 256 * MiB;
const MAX_COPIES = 64;
const ITERATIONS = quick ? 3 : 200;
const READ_ITERATIONS = quick ? 3 : 50;
/** Busy time before each measurement, so the GPU's clocks are up (none on a CPU Vulkan). */
const WARMUP_MILLIS = quick ? 0 : 300;
/** Tokens written per KvCache.write while filling. */
const WRITE_CHUNK = 2048;

interface Result {
  batch: number;
  context: number;
  partitions: number;
  copies: number;
  kvBytesPerCall: number;
  micros: number;
  streamMicros: number;
  /** The attention kernel alone, without the pass that merges partitions (= micros when unsplit). */
  attendMicros: number;
  gigabytesPerSecond: number;
  percentOfRead: number;
}

/** Fill a buffer with arbitrary finite floats (a counter's bits shaped into [-1, 1)). */
function randomFloats(count: number): Float32Array {
  const values = new Float32Array(count);
  let state = 0x9e3779b9;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    values[i] = state / 2 ** 31 - 1;
  }
  return values;
}

interface Shape {
  qHeads: number;
  kvHeads: number;
  headDim: number;
  blockSize: number;
}

type FilledCache = Awaited<ReturnType<typeof fillCache>>;

/** A one-layer f16 cache holding `count` sequences of `context` tokens, blocks handed out round-robin. */
async function fillCache(runtime: GpuRuntime, shape: Shape, count: number, context: number) {
  const { kvHeads, headDim, blockSize } = shape;
  const blocksPerSequence = Math.ceil(context / blockSize);
  const spec: KvCacheSpec = {
    layers: 1,
    kvHeads,
    headDim,
    blockSize,
    blockCount: count * blocksPerSequence,
    storage: { kind: "float", dtype: "f16" },
  };
  const cache = new WebGpuKvCache(runtime, spec);
  const kv = new PagedKv(cache);
  const sequences = Array.from({ length: count }, () => kv.create());
  const slots = sequences.map(() => [] as number[]);
  for (let block = 0; block < blocksPerSequence; block++) {
    sequences.forEach((sequence, i) =>
      slots[i]!.push(...kv.append(sequence, Math.min(blockSize, context - block * blockSize))),
    );
  }
  const chunkKeys = runtime.allocate([WRITE_CHUNK, kvHeads, headDim], "f32", "weights");
  runtime.upload(chunkKeys, randomFloats(WRITE_CHUNK * kvHeads * headDim));
  const slotTensors: GpuTensor[] = [];
  for (const sequenceSlots of slots) {
    for (let start = 0; start < context; start += WRITE_CHUNK) {
      const count = Math.min(WRITE_CHUNK, context - start);
      const slotTensor = runtime.allocate([count], "u32", "weights");
      runtime.upload(slotTensor, Uint32Array.from(sequenceSlots.slice(start, start + count)));
      const keys = count === WRITE_CHUNK ? chunkKeys : runtime.allocate([count, kvHeads, headDim], "f32", "weights");
      if (keys !== chunkKeys) runtime.upload(keys, randomFloats(count * kvHeads * headDim));
      cache.write(0, keys, keys, slotTensor);
      slotTensors.push(slotTensor, ...(keys === chunkKeys ? [] : [keys]));
    }
    await runtime.finish();
  }
  for (const tensor of [chunkKeys, ...slotTensors]) runtime.release(tensor);
  return { cache, kv, sequences };
}

async function measureCase(
  runtime: GpuRuntime,
  timer: DispatchTimer,
  batch: number,
  context: number,
  readGigabytesPerSecond: number,
): Promise<Result> {
  const { qHeads, kvHeads, headDim } = SHAPE;
  const kvBytesPerCall = batch * context * kvHeads * headDim * 2 * 2;
  const copies = Math.max(1, Math.min(MAX_COPIES, Math.ceil(ROTATION_BYTES / kvBytesPerCall)));
  const { cache, kv, sequences } = await fillCache(runtime, SHAPE, copies * batch, context);

  const q = runtime.allocate([batch, qHeads, headDim], "f32", "weights");
  runtime.upload(q, randomFloats(batch * qHeads * headDim));
  const options = { scale: 1 / Math.sqrt(headDim), slidingWindow: null };
  const plans: PlannedAttention[] = [];
  const batches = Array.from({ length: copies }, (_, copy) => {
    const prepared = prepareAttention(
      runtime,
      sequences.slice(copy * batch, (copy + 1) * batch).map((sequence, row) => ({
        queryStart: row,
        queryLength: 1,
        contextLength: context,
        blockTable: kv.blockTable(sequence),
      })),
    );
    const tuning = decodeTarget ? { targetWorkgroups: Number(decodeTarget) } : {};
    plans.push(planAttention(runtime, q, cache, 0, prepared, options, tuning));
    return prepared;
  });
  const timing = await timer.time(
    plans.map((plan) => plan.dispatches),
    ITERATIONS,
    WARMUP_MILLIS,
  );
  const attendTiming =
    plans[0]!.partitions > 1
      ? await timer.time(
          plans.map((plan) => plan.dispatches.slice(0, -1)),
          ITERATIONS,
          WARMUP_MILLIS,
        )
      : timing;
  for (const plan of plans) for (const tensor of [plan.out, plan.partials]) runtime.release(tensor);
  for (const prepared of batches) prepared.dispose();
  runtime.release(q);
  cache.dispose();
  await runtime.finish();
  const micros = callMicros(timing);
  const gigabytesPerSecond = kvBytesPerCall / micros / 1000;
  return {
    batch,
    context,
    partitions: plans[0]!.partitions,
    copies,
    kvBytesPerCall,
    micros,
    streamMicros: timing.streamMicros,
    attendMicros: callMicros(attendTiming),
    gigabytesPerSecond,
    percentOfRead: (100 * gigabytesPerSecond) / readGigabytesPerSecond,
  };
}

function printTable(results: Result[]): void {
  const header = ["batch", "context", "partitions", "KV MiB", "µs/call", "GB/s", "% read", "stream µs", "attend µs"];
  const rows = results.map((result) => [
    String(result.batch),
    String(result.context),
    String(result.partitions),
    (result.kvBytesPerCall / MiB).toFixed(1),
    result.micros.toFixed(1),
    result.gigabytesPerSecond.toFixed(result.gigabytesPerSecond < 10 ? 2 : 0),
    result.percentOfRead.toFixed(0),
    result.streamMicros.toFixed(1),
    result.attendMicros.toFixed(1),
  ]);
  printAligned(`decode attention (32 q heads, 8 kv heads, headDim 128, f16 KV, block 16)`, header, rows);
}

/** Llama-3.2-1B's attention: the model of the agent-memory and engine benchmarks. */
const SMALL_SHAPE: Shape = { qHeads: 32, kvHeads: 8, headDim: 64, blockSize: 16 };
/** Gemma-3-12B's attention (headDim 256): in the partition sweep with --head-dims. */
const WIDE_SHAPE: Shape = { qHeads: 16, kvHeads: 8, headDim: 256, blockSize: 16 };
const PREFILL_CASES: { rows: number; context: number }[] = quick
  ? [
      { rows: 16, context: 256 },
      { rows: 64, context: 64 },
    ]
  : [
      ...[1024, 8192, 32768].flatMap((context) => [64, 512].map((rows) => ({ rows, context }))),
      { rows: 4096, context: 4096 },
    ];
const SWEEP_ROWS = quick ? [1, 4] : [1, 2, 3, 4, 8, 16];
/**
 * The partition sweep behind the workgroup targets of backends/webgpu/ops/attention.ts: a hot
 * follow-up's 64 or 65 new rows (the agent-memory benchmark's), and a 512-row prefill chunk, over long
 * contexts in the 1B shape (headDim 64) and the 8B shape (headDim 128), the prefill kernel alone at
 * each target.
 */
const numbers = (name: string, otherwise: number[]) => option(name)?.split(",").map(Number) ?? otherwise;
const PARTITION_ROWS = numbers("rows", [64, 65, 512]);
const PARTITION_CONTEXTS = numbers("contexts", quick ? [1024] : [8192, 16384, 32768]);
const PARTITION_TARGETS = numbers("targets", [128, 256, 384, 512, 768, 1024, 2048]);
const PARTITION_SHAPES = numbers("head-dims", [64, 128]).map((headDim) => {
  const shape = [SMALL_SHAPE, SHAPE, WIDE_SHAPE].find((candidate) => candidate.headDim === headDim);
  if (!shape) throw new Error(`--head-dims: ${headDim} is not one of 64, 128, 256`);
  return shape;
});
const SWEEP_CONTEXT = quick ? 256 : 8192;
/** The occupancy sweep: keys per workgroup, and kv head counts (4 q heads each) that set the workgroups. */
const OCCUPANCY_CONTEXT = quick ? 256 : 4096;
const OCCUPANCY_KV_HEADS = quick ? [1, 2] : [8, 16, 24, 33, 48, 66, 99, 132];
/** Timed work per measurement: iterations are fitted to a first call's time. */
const PREFILL_TARGET_MICROS = quick ? 0 : 300_000;

interface KernelTiming {
  micros: number;
  streamMicros: number;
  teraflops: number;
}

interface PrefillResult {
  headDim: number;
  rows: number;
  context: number;
  flops: number;
  /** Key partitions of the prefill kernel's dispatch. */
  partitions: number;
  decodeKernel: KernelTiming;
  prefillKernel: KernelTiming;
  speedup: number;
  maxDifference: number;
}

/** Flops of one call: 4·headDim per visible (query head, key) pair, causal. */
function prefillFlops(shape: Shape, rows: number, context: number): number {
  let pairs = 0;
  for (let row = 0; row < rows; row++) pairs += context - rows + row + 1;
  return 4 * shape.headDim * shape.qHeads * pairs;
}

/** Random queries for `rows` rows at the end of `context` tokens of the filled cache's one sequence. */
function prefillQueries(runtime: GpuRuntime, shape: Shape, filled: FilledCache, rows: number, context: number) {
  const q = runtime.allocate([rows, shape.qHeads, shape.headDim], "f32", "weights");
  runtime.upload(q, randomFloats(rows * shape.qHeads * shape.headDim));
  const sequence = {
    queryStart: 0,
    queryLength: rows,
    contextLength: context,
    blockTable: filled.kv.blockTable(filled.sequences[0]!),
  };
  return { q, sequence };
}

/** A call's timing, with iterations fitted to a first call so each measurement takes ~PREFILL_TARGET_MICROS. */
async function timeFitted(timer: DispatchTimer, dispatches: Call) {
  const first = await timer.time([dispatches], 1);
  const iterations = Math.max(2, Math.min(ITERATIONS, Math.round(PREFILL_TARGET_MICROS / callMicros(first))));
  return timer.time([dispatches], iterations, quick ? 0 : 50);
}

async function measurePrefill(
  runtime: GpuRuntime,
  timer: DispatchTimer,
  shape: Shape,
  filled: Awaited<ReturnType<typeof fillCache>>,
  rows: number,
  context: number,
): Promise<PrefillResult> {
  const { headDim } = shape;
  const { cache } = filled;
  const { q, sequence } = prefillQueries(runtime, shape, filled, rows, context);
  const options = { scale: 1 / Math.sqrt(headDim), slidingWindow: null };
  const flops = prefillFlops(shape, rows, context);
  const outputs: Float32Array[] = [];
  const timings: KernelTiming[] = [];
  let partitions = 0;
  for (const prefillMinRows of [Infinity, 1]) {
    const prepared = prepareAttention(runtime, [sequence], prefillMinRows);
    const plan = planAttention(runtime, q, cache, 0, prepared, options);
    partitions = plan.partitions;
    const timing = await timeFitted(timer, plan.dispatches);
    for (const work of plan.dispatches) runtime.dispatch(work);
    outputs.push(new Float32Array(await runtime.readBytes(plan.out)));
    for (const tensor of [plan.out, plan.partials]) runtime.release(tensor);
    prepared.dispose();
    const micros = callMicros(timing);
    timings.push({ micros, streamMicros: timing.streamMicros, teraflops: flops / micros / 1e6 });
  }
  runtime.release(q);
  await runtime.finish();
  return {
    headDim,
    rows,
    context,
    flops,
    partitions,
    decodeKernel: timings[0]!,
    prefillKernel: timings[1]!,
    speedup: timings[0]!.micros / timings[1]!.micros,
    maxDifference: relativeDifference(outputs[0]!, outputs[1]!),
  };
}

function printPrefill(title: string, results: PrefillResult[]): void {
  const header = [
    "headDim",
    "rows",
    "context",
    "GFLOP",
    "parts",
    "decode µs",
    "TFLOP/s",
    "prefill µs",
    "TFLOP/s",
    "stream µs",
    "×",
    "max diff",
  ];
  const rows = results.map((r) => [
    String(r.headDim),
    String(r.rows),
    String(r.context),
    (r.flops / 1e9).toFixed(2),
    String(r.partitions),
    r.decodeKernel.micros.toFixed(1),
    r.decodeKernel.teraflops.toFixed(2),
    r.prefillKernel.micros.toFixed(1),
    r.prefillKernel.teraflops.toFixed(2),
    r.prefillKernel.streamMicros.toFixed(1),
    r.speedup.toFixed(1),
    r.maxDifference.toExponential(1),
  ]);
  printAligned(title, header, rows);
}

interface TailResult {
  headDim: number;
  context: number;
  /** 64 rows: four whole work items per kv head. */
  wholeMicros: number;
  /** 65 rows, the 65th on the decode kernel (what the planner does). */
  decodeTailMicros: number;
  /** 65 rows, the 65th as a fifth prefill work item. */
  prefillTailMicros: number;
  maxDifference: number;
}

/**
 * A hot follow-up's 65th row (the previous answer's last token): on the decode kernel beside four
 * whole prefill items, against a fifth, nearly empty prefill item, with 64 rows as the floor.
 */
async function tailComparison(runtime: GpuRuntime, timer: DispatchTimer): Promise<TailResult[]> {
  const results: TailResult[] = [];
  for (const shape of [SMALL_SHAPE, SHAPE])
    for (const context of PARTITION_CONTEXTS) {
      const filled = await fillCache(runtime, shape, 1, context);
      const options = { scale: 1 / Math.sqrt(shape.headDim), slidingWindow: null };
      const micros: number[] = [];
      const outputs: Float32Array[] = [];
      for (const [rows, decodeTails] of [
        [64, true],
        [65, true],
        [65, false],
      ] as const) {
        const { q, sequence } = prefillQueries(runtime, shape, filled, rows, context);
        const prepared = prepareAttention(runtime, [sequence], undefined, decodeTails);
        const plan = planAttention(runtime, q, filled.cache, 0, prepared, options);
        micros.push(callMicros(await timeFitted(timer, plan.dispatches)));
        if (rows === 65) {
          for (const work of plan.dispatches) runtime.dispatch(work);
          outputs.push(new Float32Array(await runtime.readBytes(plan.out)));
        }
        for (const tensor of [plan.out, plan.partials, q]) runtime.release(tensor);
        prepared.dispose();
      }
      filled.cache.dispose();
      await runtime.finish();
      results.push({
        headDim: shape.headDim,
        context,
        wholeMicros: micros[0]!,
        decodeTailMicros: micros[1]!,
        prefillTailMicros: micros[2]!,
        maxDifference: relativeDifference(outputs[0]!, outputs[1]!),
      });
    }
  const header = ["headDim", "context", "64 rows µs", "65, tail on decode µs", "65, tail on prefill µs", "max diff"];
  const rows = results.map((r) => [
    String(r.headDim),
    String(r.context),
    r.wholeMicros.toFixed(1),
    r.decodeTailMicros.toFixed(1),
    r.prefillTailMicros.toFixed(1),
    r.maxDifference.toExponential(1),
  ]);
  printAligned(
    `the 65th row: decode kernel vs a fifth prefill work item (32 q heads, 8 kv heads, f16 KV)`,
    header,
    rows,
  );
  return results;
}

/** Largest difference of two outputs, relative to the largest output. */
function relativeDifference(a: Float32Array, b: Float32Array): number {
  let largest = 0;
  let difference = 0;
  for (let i = 0; i < a.length; i++) {
    largest = Math.max(largest, Math.abs(a[i]!));
    difference = Math.max(difference, Math.abs(a[i]! - b[i]!));
  }
  return difference / largest;
}

interface PartitionResult {
  /** The kernel's shape (--shapes), or null for the planner's. */
  shape: string | null;
  headDim: number;
  rows: number;
  context: number;
  target: number;
  partitions: number;
  micros: number;
  teraflops: number;
  /** Largest difference from the first shape's output at the same target, relative to its largest. */
  maxDifference: number;
}

/**
 * The prefill kernel on PARTITION_ROWS rows at each partition target, in both shapes (of 65 rows the
 * 65th goes to the decode kernel, as the planner sends it), in each of the kernel's --shapes.
 */
async function partitionSweep(runtime: GpuRuntime, timer: DispatchTimer): Promise<PartitionResult[]> {
  const results: PartitionResult[] = [];
  for (const shape of PARTITION_SHAPES)
    for (const context of PARTITION_CONTEXTS) {
      const filled = await fillCache(runtime, shape, 1, context);
      const { cache } = filled;
      for (const rows of PARTITION_ROWS) {
        const { q, sequence } = prefillQueries(runtime, shape, filled, rows, context);
        const prepared = prepareAttention(runtime, [sequence], 1);
        const options = { scale: 1 / Math.sqrt(shape.headDim), slidingWindow: null };
        for (const target of PARTITION_TARGETS) {
          let reference: Float32Array | null = null;
          for (const variant of prefillShapes) {
            const plan = planAttention(runtime, q, cache, 0, prepared, options, {
              targetWorkgroups: target,
              prefill: variant?.tuning ?? { maxVectors: prefillVectors },
            });
            const micros = callMicros(await timeFitted(timer, plan.dispatches));
            const output = new Float32Array(await runtime.readBytes(plan.out));
            for (const tensor of [plan.out, plan.partials]) runtime.release(tensor);
            reference ??= output;
            results.push({
              shape: variant?.name ?? null,
              headDim: shape.headDim,
              rows,
              context,
              target,
              partitions: plan.partitions,
              micros,
              teraflops: prefillFlops(shape, rows, context) / micros / 1e6,
              maxDifference: relativeDifference(reference, output),
            });
          }
        }
        prepared.dispose();
        runtime.release(q);
      }
      cache.dispose();
      await runtime.finish();
    }
  const header = [
    "shape",
    "headDim",
    "rows",
    "context",
    "target workgroups",
    "partitions",
    "µs/call",
    "TFLOP/s",
    "max diff",
  ];
  const rows = results.map((r) => [
    r.shape ?? "planned",
    String(r.headDim),
    String(r.rows),
    String(r.context),
    String(r.target),
    String(r.partitions),
    r.micros.toFixed(1),
    r.teraflops.toFixed(2),
    r.maxDifference.toExponential(1),
  ]);
  printAligned(
    `partition sweep: prefill kernel, 8 kv heads (32 q heads at headDim 64 and 128, 16 at 256)`,
    header,
    rows,
  );
  return results;
}

interface OccupancyResult {
  headDim: number;
  kvHeads: number;
  workgroups: number;
  micros: number;
}

/**
 * How many prefill workgroups a GPU runs at once: the same work per workgroup (64 rows of 4 heads
 * over OCCUPANCY_CONTEXT keys, one partition) with more and more kv heads, so more workgroups. While
 * the time stays flat the GPU had room for them; where it steps up, they queued for a second wave.
 */
async function occupancySweep(runtime: GpuRuntime, timer: DispatchTimer): Promise<OccupancyResult[]> {
  const results: OccupancyResult[] = [];
  for (const headDim of [64, 128]) {
    for (const kvHeads of OCCUPANCY_KV_HEADS) {
      const shape: Shape = { qHeads: 4 * kvHeads, kvHeads, headDim, blockSize: 16 };
      const filled = await fillCache(runtime, shape, 1, OCCUPANCY_CONTEXT);
      const { cache } = filled;
      const { q, sequence } = prefillQueries(runtime, shape, filled, 64, OCCUPANCY_CONTEXT);
      const prepared = prepareAttention(runtime, [sequence], 1);
      const options = { scale: 1, slidingWindow: null };
      const plan = planAttention(runtime, q, cache, 0, prepared, options, {
        targetWorkgroups: 1,
        prefill: { maxVectors: prefillVectors },
      });
      const workgroups = plan.dispatches
        .map(({ workgroups: [x, y, z] }) => x * (y ?? 1) * (z ?? 1))
        .reduce((sum, count) => sum + count, 0);
      const micros = callMicros(await timeFitted(timer, plan.dispatches));
      results.push({ headDim, kvHeads, workgroups, micros });
      console.log(
        `occupancy: headDim ${headDim}, ${kvHeads} kv heads, ${workgroups} workgroups: ${micros.toFixed(1)} µs`,
      );
      for (const tensor of [plan.out, plan.partials, q]) runtime.release(tensor);
      prepared.dispose();
      cache.dispose();
      await runtime.finish();
    }
  }
  return results;
}

async function prefillPart(runtime: GpuRuntime, timer: DispatchTimer) {
  const cases: PrefillResult[] = [];
  const sweep: PrefillResult[] = [];
  for (const shape of [SHAPE, SMALL_SHAPE]) {
    const contexts = [...new Set([...PREFILL_CASES.map((c) => c.context), SWEEP_CONTEXT])].sort((a, b) => a - b);
    for (const context of contexts) {
      const filled = await fillCache(runtime, shape, 1, context);
      for (const c of PREFILL_CASES.filter((c) => c.context === context)) {
        cases.push(await measurePrefill(runtime, timer, shape, filled, c.rows, context));
      }
      if (context === SWEEP_CONTEXT) {
        for (const rows of SWEEP_ROWS) sweep.push(await measurePrefill(runtime, timer, shape, filled, rows, context));
      }
      filled.cache.dispose();
    }
  }
  printPrefill("prefill attention, decode kernel vs prefill kernel (32 q heads, 8 kv heads, f16 KV, block 16)", cases);
  printPrefill(`few rows at ${SWEEP_CONTEXT} tokens of context: where the prefill kernel takes over`, sweep);
  const tails = await tailComparison(runtime, timer);
  const partitionTargets = await partitionSweep(runtime, timer);
  return { cases, sweep, tails, partitionTargets };
}

/** A table with right-aligned columns under a title line. */
function printAligned(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padStart(widths[column]!)).join("  ");
  console.log(`\n${title}\n${line(header)}\n${rows.map(line).join("\n")}`);
}

function repositoryRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(directory, "package.json"))) {
    const parent = dirname(directory);
    if (parent === directory) throw new Error("cannot find the repository root (package.json)");
    directory = parent;
  }
  return directory;
}

async function main(): Promise<void> {
  const gpuDevice = await benchDevice();
  const runtime = new GpuRuntime(gpuDevice);
  const timer = new DispatchTimer(runtime);
  console.log(
    `device: ${gpuDevice.adapterDescription}; timing by ${timer.method}${quick ? ", --quick" : ""}; ` +
      `max binding ${runtime.maxBindingBytes / MiB} MiB, workgroup memory ${gpuDevice.limits.maxComputeWorkgroupStorageSize} B`,
  );
  const partitionsOnly = process.argv.includes("--partitions");
  const occupancyOnly = process.argv.includes("--occupancy");
  const tailOnly = process.argv.includes("--tail");
  const decodePart = !process.argv.includes("--prefill") && !partitionsOnly && !occupancyOnly && !tailOnly;
  const results: Result[] = [];
  let read = { bytes: 0, micros: 0, gigabytesPerSecond: 0 };
  if (decodePart) {
    const measured = await measureRead(runtime, timer, {
      requestedBytes: quick ? 64 * MiB : 1024 * MiB,
      iterations: READ_ITERATIONS,
      warmupMillis: WARMUP_MILLIS,
    });
    const micros = callMicros(measured.timing);
    read = { bytes: measured.bytes, micros, gigabytesPerSecond: measured.bytes / micros / 1000 };
    console.log(
      `read kernel: ${(read.bytes / MiB).toFixed(0)} MiB in ${micros.toFixed(1)} µs = ${read.gigabytesPerSecond.toFixed(0)} GB/s`,
    );
    for (const context of CONTEXTS) {
      for (const batch of BATCHES)
        results.push(await measureCase(runtime, timer, batch, context, read.gigabytesPerSecond));
    }
    printTable(results);
  }
  const prefill =
    process.argv.includes("--decode") || partitionsOnly || occupancyOnly || tailOnly
      ? null
      : await prefillPart(runtime, timer);
  const partitionSweepOnly = partitionsOnly ? await partitionSweep(runtime, timer) : null;
  const tailsOnly = tailOnly ? await tailComparison(runtime, timer) : null;
  const occupancy = occupancyOnly ? await occupancySweep(runtime, timer) : null;

  const device = gpuDevice.adapterDescription.split(" / ").pop() ?? "unknown";
  const slug = (deviceName ?? device.split(":")[0]!)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");
  const folder = join(repositoryRoot(), "bench", "results");
  mkdirSync(folder, { recursive: true });
  const file = join(folder, `attention-${slug || "unknown"}.json`);
  const report = {
    device: gpuDevice.adapterDescription,
    date: new Date().toISOString(),
    timing: timer.method,
    quick,
    shape: SHAPE,
    read,
    results,
    prefill: prefill && { smallShape: SMALL_SHAPE, ...prefill },
    partitionTargets: partitionSweepOnly,
    tails: tailsOnly,
    occupancy,
    prefillVectors,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
  runtime.dispose();
  gpuDevice.device.destroy();
}

await main();
