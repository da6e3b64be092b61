/**
 * The WebGPU matmul kernels against the memory bandwidth they can hope for: a saturating-read kernel
 * (kernels/bench_read.wgsl) measured in the same run, then quantized GEMV (decode: M = 1) at the shapes
 * of Llama-3-8B's projections and Gemma 3's 262144-row LM head, and GEMM (prefill) at M = 512 and 2048.
 *
 * Convention: a weight is stored [N, K] = [out features, in features] (rows × cols); a case "K→N" reads
 * K inputs and writes N outputs, e.g. 4096→14336 is Llama-3-8B's gate/up projection, 14336→4096 its down.
 * Quantized cases use MLX's affine format, group 64, bf16 scales and biases. GB/s counts the bytes of
 * weight, scales and biases read per call; "% read" compares with the read kernel's GB/s.
 *
 * Timing: with timestamp-query, "µs/call" is the median of calls each alone in a compute pass, and
 * "stream µs" the time per call of many calls back to back in one pass (the barriers between them, as
 * between a model's layers, included); without it, wall-clock over many calls with one wait at the end.
 * GEMV calls cycle through copies of the weights that together exceed the GPU's L2 cache.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist && node dist/bench/webgpu-kernels.js [--quick] [--sweep]
 * --quick: few iterations and copies (for a CPU Vulkan such as lavapipe); --sweep: also time the GEMV
 * at several workgroup shapes; --cases=TEXT: only the cases whose name contains TEXT (e.g. gemv);
 * --enable-dawn-features=a,b: Dawn toggles to try (e.g. disable_robustness);
 * --name=NAME: the device's name in the output file (Dawn may name only the vendor, e.g. "nvidia").
 * Writes bench/results/webgpu-kernels-<device>.json.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Matrix, QuantizedMatrix } from "../backends/contract.js";
import { planMatmul, setGemvTuning, type GemvTuning } from "../backends/webgpu/ops/matmul.js";
import { GpuRuntime, type GpuTensor } from "../backends/webgpu/runtime.js";
import { callMicros, fill, measureRead } from "./lib/read-baseline.js";
import { DispatchTimer, benchDevice, type Call } from "./lib/gpu-timing.js";

const options = new Set(process.argv.slice(2));
const quick = options.has("--quick");
const sweep = options.has("--sweep");
const deviceName = process.argv.find((option) => option.startsWith("--name="))?.slice("--name=".length);
const dawnFeatures = process.argv
  .filter((option) => option.startsWith("--enable-dawn-features="))
  .flatMap((option) => option.split("=")[1]!.split(","));

const MiB = 1 << 20;
/** Weight copies to cycle through: together past any L2 (50 MiB on an H200). */
const ROTATION_BYTES = quick ? 0 : 256 * MiB;
const GEMV_ITERATIONS = quick ? 3 : 400;
const GEMM_ITERATIONS = quick ? 1 : 20;
const READ_ITERATIONS = quick ? 3 : 50;
/** Busy time before each measurement, so the GPU's clocks are up (none on a CPU Vulkan). */
const WARMUP_MILLIS = quick ? 0 : 300;
const GROUP_SIZE = 64;

interface Case {
  name: string;
  m: number;
  k: number;
  n: number;
  /** Bits of the quantized weight, or "bf16" for a plain one. */
  weight: 4 | 8 | "bf16";
}

const GEMV_SHAPES: [number, number][] = [
  [4096, 4096],
  [4096, 14336],
  [14336, 4096],
  [2560, 262144],
];
const CASES: Case[] = [
  ...([4, 8] as const).flatMap((bits) =>
    GEMV_SHAPES.map(([k, n]): Case => ({ name: `gemv q${bits}`, m: 1, k, n, weight: bits })),
  ),
  { name: "gemv bf16", m: 1, k: 4096, n: 4096, weight: "bf16" },
  { name: "gemm q4", m: 512, k: 4096, n: 4096, weight: 4 },
  // On a CPU Vulkan one M = 2048 call takes half a minute: --quick leaves it out.
  ...(quick ? [] : [{ name: "gemm q4", m: 2048, k: 4096, n: 4096, weight: 4 } as const]),
];

/** GEMV workgroup shapes --sweep tries on the 4-bit GEMV. */
const SWEEP_TUNINGS: GemvTuning[] = [8, 16, 32, 64].flatMap((threadsPerRow) =>
  [128, 256].map((workgroupSize) => ({ threadsPerRow, workgroupSize })),
);

function makeWeight(runtime: GpuRuntime, { k, n, weight }: Case): { matrix: Matrix; tensors: GpuTensor[] } {
  if (weight === "bf16") {
    const tensor = runtime.allocate([n, k], "bf16", "weights");
    fill(runtime, tensor, 0xbfffbfff); // clear each exponent's top bit: finite values below 2
    return { matrix: tensor, tensors: [tensor] };
  }
  const packed = runtime.allocate([n, (k * weight) / 32], "u32", "weights");
  const scales = runtime.allocate([n, k / GROUP_SIZE], "bf16", "weights");
  const biases = runtime.allocate([n, k / GROUP_SIZE], "bf16", "weights");
  fill(runtime, packed);
  fill(runtime, scales, 0, 0x3c003c00); // bf16 0.0078125
  fill(runtime, biases, 0, 0xbc00bc00);
  const matrix: QuantizedMatrix = {
    kind: "quantized",
    weight: packed,
    scales,
    biases,
    rows: n,
    cols: k,
    bits: weight,
    groupSize: GROUP_SIZE,
  };
  return { matrix, tensors: [packed, scales, biases] };
}

interface Result {
  name: string;
  m: number;
  k: number;
  n: number;
  weightBytes: number;
  copies: number;
  dispatchesPerCall: number;
  micros: number;
  streamMicros: number;
  gigabytesPerSecond: number;
  percentOfRead: number;
  teraflops: number;
  tuning?: GemvTuning;
}

async function measureCase(
  runtime: GpuRuntime,
  timer: DispatchTimer,
  testCase: Case,
  readGigabytesPerSecond: number,
): Promise<Result> {
  const { m, k, n } = testCase;
  const first = makeWeight(runtime, testCase);
  const weightBytes = first.tensors.reduce((sum, tensor) => sum + tensor.byteLength, 0);
  const copies = m > 8 ? 1 : Math.max(1, Math.min(32, Math.ceil(ROTATION_BYTES / weightBytes)));
  const weights = [first, ...Array.from({ length: copies - 1 }, () => makeWeight(runtime, testCase))];
  const x = runtime.allocate([m, k], "f32", "weights");
  fill(runtime, x, 0x3f7fffff); // floats in [0, 1)
  const out = runtime.allocate([m, n], "f32", "weights");
  const calls: Call[] = weights.map(({ matrix }) => planMatmul(runtime, x, matrix, out));
  const timing = await timer.time(calls, m > 8 ? GEMM_ITERATIONS : GEMV_ITERATIONS, WARMUP_MILLIS);
  for (const tensor of [x, out, ...weights.flatMap((weight) => weight.tensors)]) runtime.release(tensor);
  await runtime.finish();
  const micros = callMicros(timing);
  const gigabytesPerSecond = weightBytes / micros / 1000;
  return {
    name: testCase.name,
    m,
    k,
    n,
    weightBytes,
    copies,
    dispatchesPerCall: calls[0]!.length,
    micros,
    streamMicros: timing.streamMicros,
    gigabytesPerSecond,
    percentOfRead: (100 * gigabytesPerSecond) / readGigabytesPerSecond,
    teraflops: (2 * m * n * k) / micros / 1e6,
  };
}

function printTable(title: string, results: Result[]): void {
  const header = ["case", "M", "K→N", "MB", "µs/call", "GB/s", "% read", "stream µs", "TFLOP/s", "tuning"];
  const rows = results.map((result) => [
    result.name,
    String(result.m),
    `${result.k}→${result.n}`,
    (result.weightBytes / 1e6).toFixed(1),
    result.micros.toFixed(1),
    result.gigabytesPerSecond.toFixed(0),
    result.percentOfRead.toFixed(0),
    result.streamMicros.toFixed(1),
    result.teraflops.toFixed(2),
    result.tuning ? `${result.tuning.threadsPerRow}t/${result.tuning.workgroupSize}` : "",
  ]);
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
  const gpuDevice = await benchDevice(dawnFeatures);
  const runtime = new GpuRuntime(gpuDevice);
  const timer = new DispatchTimer(runtime);
  const device = gpuDevice.adapterDescription.split(" / ").pop() ?? "unknown";
  console.log(
    `device: ${gpuDevice.adapterDescription}; subgroups ${gpuDevice.hasSubgroups}, timing by ${timer.method}` +
      `${quick ? ", --quick" : ""}${dawnFeatures.length ? `, Dawn features ${dawnFeatures.join(",")}` : ""}; max binding ${runtime.maxBindingBytes / MiB} MiB`,
  );

  const read = await measureRead(runtime, timer, {
    requestedBytes: quick ? 64 * MiB : 1024 * MiB,
    iterations: READ_ITERATIONS,
    warmupMillis: WARMUP_MILLIS,
  });
  const readGigabytesPerSecond = read.bytes / callMicros(read.timing) / 1000;
  console.log(
    `read kernel: ${(read.bytes / MiB).toFixed(0)} MiB in ${callMicros(read.timing).toFixed(1)} µs = ` +
      `${readGigabytesPerSecond.toFixed(0)} GB/s (stream ${read.timing.streamMicros.toFixed(1)} µs/call)`,
  );

  // What a dispatch costs at all: the same kernel over 64 KiB.
  const floor = await measureRead(runtime, timer, {
    requestedBytes: 64 * 1024,
    iterations: READ_ITERATIONS,
    warmupMillis: WARMUP_MILLIS,
  });
  console.log(
    `dispatch floor (read kernel over 64 KiB): ${callMicros(floor.timing).toFixed(1)} µs alone, ` +
      `${floor.timing.streamMicros.toFixed(1)} µs/call back to back`,
  );

  const results: Result[] = [];
  const only = process.argv.find((option) => option.startsWith("--cases="))?.slice("--cases=".length);
  for (const testCase of CASES.filter((c) => !only || c.name.includes(only))) {
    results.push(await measureCase(runtime, timer, testCase, readGigabytesPerSecond));
  }
  printTable("matmul (weights [N, K] = [out, in]; group 64, bf16 scales)", results);

  const sweepResults: Result[] = [];
  if (sweep) {
    for (const tuning of SWEEP_TUNINGS) {
      setGemvTuning(tuning);
      for (const [k, n] of GEMV_SHAPES) {
        const result = await measureCase(
          runtime,
          timer,
          { name: "gemv q4", m: 1, k, n, weight: 4 },
          readGigabytesPerSecond,
        );
        sweepResults.push({ ...result, tuning });
      }
    }
    setGemvTuning(null);
    printTable("GEMV workgroup shapes (threads per row / workgroup size)", sweepResults);
  }

  const slug = (deviceName ?? device.split(":")[0]!)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");
  const folder = join(repositoryRoot(), "bench", "results");
  mkdirSync(folder, { recursive: true });
  const file = join(folder, `webgpu-kernels-${slug || "unknown"}.json`);
  const report = {
    device: gpuDevice.adapterDescription,
    date: new Date().toISOString(),
    timing: timer.method,
    quick,
    read: {
      bytes: read.bytes,
      micros: callMicros(read.timing),
      streamMicros: read.timing.streamMicros,
      gigabytesPerSecond: readGigabytesPerSecond,
    },
    dispatchFloor: { micros: callMicros(floor.timing), streamMicros: floor.timing.streamMicros },
    results,
    sweep: sweepResults,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
  runtime.dispose();
  gpuDevice.device.destroy();
}

await main();
