/**
 * The baseline every WebGPU benchmark compares with, measured in the same run: a saturating-read
 * kernel (kernels/bench_read.wgsl) over a large buffer of random words.
 */
import { grid1d } from "../../backends/webgpu/ops/grid.js";
import { Params, type GpuRuntime, type GpuTensor } from "../../backends/webgpu/runtime.js";
import type { Call, CallTiming, DispatchTimer } from "./gpu-timing.js";

const MiB = 1 << 20;

/** The call time a table leads with: one call alone where timestamps allow, else the stream. */
export const callMicros = (timing: CallTiming) => timing.isolatedMicros ?? timing.streamMicros;

/** Fill a weight buffer with pseudo-random words from one host block, written again and again. */
export function fill(runtime: GpuRuntime, tensor: GpuTensor, wordMask = 0xffffffff, constant?: number): void {
  const block = new Uint32Array(Math.min(4 * MiB, Math.ceil(tensor.byteLength / 4)));
  let state = 0x9e3779b9;
  for (let i = 0; i < block.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    block[i] = constant ?? (state & wordMask) >>> 0;
  }
  const bytes = Math.ceil(tensor.byteLength / 4) * 4;
  for (let offset = 0; offset < bytes; offset += block.byteLength) {
    runtime.device.queue.writeBuffer(tensor.buffer, offset, block, 0, Math.min(block.byteLength, bytes - offset) / 4);
  }
}

/** Reads `requestedBytes` (capped by the binding limit) with vec4 loads; returns the bytes and timing. */
export async function measureRead(
  runtime: GpuRuntime,
  timer: DispatchTimer,
  options: { requestedBytes: number; iterations: number; warmupMillis: number },
): Promise<{ bytes: number; timing: CallTiming }> {
  const { requestedBytes, iterations, warmupMillis } = options;
  const limit = Math.min(runtime.maxBindingBytes, runtime.gpu.limits.maxBufferSize);
  const bytes = Math.floor(Math.min(requestedBytes, limit) / 4096) * 4096;
  const data = runtime.allocate([bytes / 4], "u32", "weights");
  fill(runtime, data);
  const vec4Count = bytes / 16;
  const itemsPerWorkgroup = 256 * 8;
  const workgroups = grid1d(vec4Count, itemsPerWorkgroup);
  const out = runtime.allocate([workgroups[0] * workgroups[1]], "u32", "weights");
  const call: Call = [
    {
      file: "bench_read.wgsl",
      entryPoint: "read_all",
      params: new Params().u32(vec4Count),
      bindings: [data, out],
      workgroups,
    },
  ];
  const timing = await timer.time([call], iterations, warmupMillis);
  runtime.release(data);
  runtime.release(out);
  return { bytes, timing };
}
