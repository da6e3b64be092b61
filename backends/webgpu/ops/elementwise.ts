/** Elementwise ops over f32 activations (kernels/elementwise_binary.wgsl, elementwise_unary.wgsl). */
import { Params, type GpuRuntime, type GpuTensor } from "../runtime.js";
import { describeShape, grid1d, requireF32, sizeOf } from "./grid.js";

function binary(runtime: GpuRuntime, entryPoint: "add" | "mul", a: GpuTensor, b: GpuTensor): GpuTensor {
  requireF32(entryPoint, a, b);
  const count = sizeOf(a.shape);
  const bCount = sizeOf(b.shape);
  const sameShape = bCount === count;
  const rowBroadcast = b.shape.length === 1 && b.shape[0] === a.shape[a.shape.length - 1];
  if (!sameShape && !rowBroadcast) {
    throw new Error(`${entryPoint}: cannot combine ${describeShape(a.shape)} with ${describeShape(b.shape)}`);
  }
  const out = runtime.allocate(a.shape, "f32");
  runtime.dispatch({
    file: "elementwise_binary.wgsl",
    entryPoint,
    params: new Params().u32(count).u32(bCount),
    bindings: [a, b, out],
    workgroups: grid1d(count, 256),
  });
  return out;
}

function unary(runtime: GpuRuntime, entryPoint: "scale" | "silu" | "gelu_tanh", x: GpuTensor, factor = 0): GpuTensor {
  requireF32(entryPoint, x);
  const count = sizeOf(x.shape);
  const out = runtime.allocate(x.shape, "f32");
  runtime.dispatch({
    file: "elementwise_unary.wgsl",
    entryPoint,
    params: new Params().u32(count).f32(factor),
    bindings: [x, out],
    workgroups: grid1d(count, 256),
  });
  return out;
}

export const add = (runtime: GpuRuntime, a: GpuTensor, b: GpuTensor) => binary(runtime, "add", a, b);
export const mul = (runtime: GpuRuntime, a: GpuTensor, b: GpuTensor) => binary(runtime, "mul", a, b);
export const scale = (runtime: GpuRuntime, x: GpuTensor, factor: number) => unary(runtime, "scale", x, factor);
export const silu = (runtime: GpuRuntime, x: GpuTensor) => unary(runtime, "silu", x);
export const geluTanh = (runtime: GpuRuntime, x: GpuTensor) => unary(runtime, "gelu_tanh", x);
