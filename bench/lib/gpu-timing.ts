/**
 * Timing WebGPU dispatches for benchmarks: a device whose timestamps are not quantized, and a timer
 * that records planned dispatches (the ops' own `plan*` output) through the runtime between timestamp
 * queries, or times them over the wall clock when the device has no timestamp-query.
 */
import { acquireDevice, type GpuDevice } from "../../backends/webgpu/device.js";
import { GpuTensor, type Dispatch, type GpuRuntime } from "../../backends/webgpu/runtime.js";

/**
 * The backend's own device with Dawn's timestamp quantization off: it rounds timestamps to tens of
 * microseconds (a timing-attack guard for browsers), longer than a decode GEMV. `enableDawnFeatures`
 * names more Dawn toggles, for experiments (e.g. disable_robustness).
 */
export function benchDevice(enableDawnFeatures: readonly string[] = []): Promise<GpuDevice> {
  const flags = ["disable-dawn-features=timestamp_quantization"];
  if (enableDawnFeatures.length > 0) flags.push(`enable-dawn-features=${enableDawnFeatures.join(",")}`);
  return acquireDevice((reason) => process.stderr.write(`${reason}\n`), flags);
}

/** One call of an op: the dispatches it records (several when a matrix is split in row chunks). */
export type Call = readonly Dispatch[];

export interface CallTiming {
  /** Median time of one call alone in its compute pass (timestamps), or null on wall-clock timing. */
  isolatedMicros: number | null;
  /** Time per call over many calls back to back in one pass: barriers between them included. */
  streamMicros: number;
}

/** Timed dispatches per submit stay well inside the runtime's uniform arena (4096 dispatches). */
const MAX_TIMED_DISPATCHES = 3000;

export class DispatchTimer {
  constructor(private readonly runtime: GpuRuntime) {}

  get method(): "timestamp-query" | "wall-clock" {
    return this.runtime.gpu.hasTimestamps ? "timestamp-query" : "wall-clock";
  }

  /**
   * Time `iterations` calls, cycling through `calls` (copies of the weights, so reads come from memory
   * rather than a cache when the copies together outgrow it). The first call compiles and pages in;
   * more, for `warmupMillis`, bring an idle GPU's clocks up (an H200 idles at a fifth of its clock).
   */
  async time(calls: readonly Call[], requestedIterations: number, warmupMillis = 0): Promise<CallTiming> {
    const perCall = calls[0]?.length ?? 1;
    const iterations = Math.max(1, Math.min(requestedIterations, Math.floor(MAX_TIMED_DISPATCHES / 2 / perCall)));
    const warmupStarted = performance.now();
    do await this.run(calls, Math.max(iterations, calls.length));
    while (performance.now() - warmupStarted < warmupMillis);
    if (this.method === "wall-clock") {
      const started = performance.now();
      await this.run(calls, iterations);
      return { isolatedMicros: null, streamMicros: ((performance.now() - started) * 1000) / iterations };
    }
    const device = this.runtime.device;
    const queries = 2 * iterations + 2;
    const querySet = device.createQuerySet({ type: "timestamp", count: queries });
    for (let i = 0; i < iterations; i++) {
      this.runtime.beginTimedPass({ querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 });
      this.record(calls[i % calls.length]!);
      this.runtime.endTimedPass();
    }
    const stream = 2 * iterations;
    this.runtime.beginTimedPass({ querySet, beginningOfPassWriteIndex: stream, endOfPassWriteIndex: stream + 1 });
    for (let i = 0; i < iterations; i++) this.record(calls[i % calls.length]!);
    this.runtime.endTimedPass();
    const resolved = device.createBuffer({
      size: queries * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    this.runtime.resolveQueries(querySet, 0, queries, resolved);
    const bytes = await this.runtime.readBytes(new GpuTensor([queries * 2], "u32", resolved, 0, "view"));
    const ticks = new BigInt64Array(bytes);
    resolved.destroy();
    querySet.destroy();
    const isolated = Array.from({ length: iterations }, (_, i) => Number(ticks[2 * i + 1]! - ticks[2 * i]!));
    isolated.sort((a, b) => a - b);
    const streamNanos = Number(ticks[stream + 1]! - ticks[stream]!);
    return { isolatedMicros: isolated[iterations >> 1]! / 1000, streamMicros: streamNanos / 1000 / iterations };
  }

  private record(call: Call): void {
    for (const work of call) this.runtime.dispatch(work);
  }

  private async run(calls: readonly Call[], iterations: number): Promise<void> {
    for (let i = 0; i < iterations; i++) this.record(calls[i % calls.length]!);
    await this.runtime.finish();
  }
}
