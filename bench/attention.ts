/**
 * Decode attention over the paged KV cache against the memory bandwidth it can hope for: a
 * saturating-read kernel (kernels/bench_read.wgsl) measured in the same run, then one query row per
 * sequence (decode) for batch 1 and 8 at 1K, 8K and 32K tokens of context, in a Llama-3-8B layer's
 * shape (32 q heads, 8 kv heads, headDim 128) with f16 KV storage and 16-token blocks, handed out
 * round-robin so block tables interleave as a busy server's do.
 *
 * GB/s counts the K and V bytes of the context read per call (batch · context · 8 · 128 · 2 B · 2);
 * "% read" compares with the read kernel. Calls cycle through copies of the batch (other blocks of the
 * same cache) that together exceed the GPU's L2 cache, so keys and values come from memory.
 *
 * Timing (bench/lib/gpu-timing.ts): with timestamp-query, "µs/call" is the median of calls each alone
 * in a compute pass and "stream µs" the time per call of many back to back; without it, wall-clock.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist && node dist/bench/attention.js [--quick] [--name=NAME]
 * --quick: small contexts and few iterations (for a CPU Vulkan such as lavapipe); --name: the device's
 * name in the output file. Writes bench/results/attention-<device>.json.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KvCacheSpec } from "../backends/contract.js";
import { PagedKv } from "../backends/kv-paging.js";
import { planAttention, prepareAttention, type PlannedAttention } from "../backends/webgpu/ops/attention.js";
import { WebGpuKvCache } from "../backends/webgpu/ops/kv-cache.js";
import { GpuRuntime, type GpuTensor } from "../backends/webgpu/runtime.js";
import { callMicros, measureRead } from "./lib/read-baseline.js";
import { DispatchTimer, benchDevice } from "./lib/gpu-timing.js";

const quick = process.argv.includes("--quick");
const deviceName = process.argv.find((option) => option.startsWith("--name="))?.slice("--name=".length);

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

async function measureCase(
  runtime: GpuRuntime,
  timer: DispatchTimer,
  batch: number,
  context: number,
  readGigabytesPerSecond: number,
): Promise<Result> {
  const { qHeads, kvHeads, headDim, blockSize } = SHAPE;
  const kvBytesPerCall = batch * context * kvHeads * headDim * 2 * 2;
  const copies = Math.max(1, Math.min(MAX_COPIES, Math.ceil(ROTATION_BYTES / kvBytesPerCall)));
  const blocksPerSequence = Math.ceil(context / blockSize);
  const spec: KvCacheSpec = {
    layers: 1,
    kvHeads,
    headDim,
    blockSize,
    blockCount: copies * batch * blocksPerSequence,
    storage: { kind: "float", dtype: "f16" },
  };
  const cache = new WebGpuKvCache(runtime, spec);
  const kv = new PagedKv(cache);
  const sequences = Array.from({ length: copies * batch }, () => kv.create());
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
    plans.push(planAttention(runtime, q, cache, 0, prepared, options));
    return prepared;
  });
  const timing = await timer.time(
    plans.map((plan) => plan.dispatches),
    ITERATIONS,
    WARMUP_MILLIS,
  );
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
    gigabytesPerSecond,
    percentOfRead: (100 * gigabytesPerSecond) / readGigabytesPerSecond,
  };
}

function printTable(results: Result[]): void {
  const header = ["batch", "context", "partitions", "KV MiB", "µs/call", "GB/s", "% read", "stream µs"];
  const rows = results.map((result) => [
    String(result.batch),
    String(result.context),
    String(result.partitions),
    (result.kvBytesPerCall / MiB).toFixed(1),
    result.micros.toFixed(1),
    result.gigabytesPerSecond.toFixed(result.gigabytesPerSecond < 10 ? 2 : 0),
    result.percentOfRead.toFixed(0),
    result.streamMicros.toFixed(1),
  ]);
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padStart(widths[column]!)).join("  ");
  console.log(
    `\ndecode attention (32 q heads, 8 kv heads, headDim 128, f16 KV, block 16)\n${line(header)}\n${rows.map(line).join("\n")}`,
  );
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
  const read = await measureRead(runtime, timer, {
    requestedBytes: quick ? 64 * MiB : 1024 * MiB,
    iterations: READ_ITERATIONS,
    warmupMillis: WARMUP_MILLIS,
  });
  const readGigabytesPerSecond = read.bytes / callMicros(read.timing) / 1000;
  console.log(
    `read kernel: ${(read.bytes / MiB).toFixed(0)} MiB in ${callMicros(read.timing).toFixed(1)} µs = ${readGigabytesPerSecond.toFixed(0)} GB/s`,
  );
  const results: Result[] = [];
  for (const context of CONTEXTS) {
    for (const batch of BATCHES)
      results.push(await measureCase(runtime, timer, batch, context, readGigabytesPerSecond));
  }
  printTable(results);

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
    read: { bytes: read.bytes, micros: callMicros(read.timing), gigabytesPerSecond: readGigabytesPerSecond },
    results,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
  runtime.dispose();
  gpuDevice.device.destroy();
}

await main();
