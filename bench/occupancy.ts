/**
 * How many workgroups one GPU core runs at once, by workgroup size and workgroup memory: the probe
 * kernel (kernels/bench_occupancy.wgsl, a chain of dependent FMAs per thread) dispatched as 1…8
 * "waves" of a guessed core count. While the time stays flat the cores held the extra workgroups
 * side by side; each step up is another wave. Written to find why the prefill attention kernel ran
 * one workgroup per SM on an H200 (bench/attention.ts --occupancy).
 *
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist && node dist/bench/occupancy.js [--cores=132] [--name=NAME]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Params, GpuRuntime } from "../backends/webgpu/runtime.js";
import { benchDevice, DispatchTimer } from "./lib/gpu-timing.js";
import { callMicros } from "./lib/read-baseline.js";
import { option } from "./lib/options.js";

const cores = Number(option("cores") ?? 132);
const deviceName = option("name") ?? "unknown";
const STEPS = Number(option("steps") ?? 20000);
const THREADS = [128, 256];
const SHARED_KIB = [0, 8, 16, 24, 32, 40, 48];
const WAVES = [1, 2, 3, 4, 6, 8];

interface Row {
  threads: number;
  sharedKiB: number;
  /** µs per call at 1…8 waves of `cores` workgroups. */
  micros: number[];
  /** Workgroups per core that ran side by side: the most waves whose time stayed within 25% of one. */
  concurrent: number;
}

async function main(): Promise<void> {
  const gpu = await benchDevice();
  const runtime = new GpuRuntime(gpu);
  const timer = new DispatchTimer(runtime);
  const limit = gpu.limits.maxComputeWorkgroupStorageSize;
  console.log(`device: ${gpu.adapterDescription}; ${cores} cores assumed; workgroup memory limit ${limit} B`);
  const rows: Row[] = [];
  for (const threads of THREADS) {
    for (const sharedKiB of SHARED_KIB) {
      const sharedFloats = Math.max(1, (sharedKiB * 1024) / 4);
      if (sharedFloats * 4 > limit) continue;
      const micros: number[] = [];
      for (const waves of WAVES) {
        const workgroups = waves * cores;
        const out = runtime.allocate([workgroups * threads], "f32", "weights");
        const call = [
          {
            file: "bench_occupancy.wgsl",
            entryPoint: "occupy",
            constants: { THREADS: threads, SHARED_FLOATS: sharedFloats },
            params: new Params().u32(STEPS).f32(0.5),
            bindings: [out],
            workgroups: [workgroups] as const,
          },
        ];
        micros.push(callMicros(await timer.time([call], 5, 20)));
        runtime.release(out);
      }
      const concurrent = Math.max(...WAVES.filter((waves, i) => micros[i]! <= micros[0]! * 1.25));
      rows.push({ threads, sharedKiB, micros, concurrent });
      console.log(
        `${threads} threads, ${sharedKiB} KiB: ${micros.map((m) => m.toFixed(0)).join(" / ")} µs at ${WAVES.join("/")} waves → ${concurrent} per core`,
      );
    }
  }
  const folder = join(process.cwd(), "bench", "results");
  mkdirSync(folder, { recursive: true });
  const file = join(folder, `occupancy-${deviceName}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ device: gpu.adapterDescription, cores, steps: STEPS, waves: WAVES, rows, at: new Date().toISOString() }, null, 2)}\n`,
  );
  console.log(`wrote ${file}`);
  runtime.dispose();
  gpu.device.destroy();
}

await main();
