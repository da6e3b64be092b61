/** rms_norm and softmax over the last axis (kernels/norm_rms.wgsl, kernels/norm_softmax.wgsl). */
import type { OpName } from "../../contract.js";
import { Params, type GpuRuntime, type GpuTensor } from "../runtime.js";
import { describeShape, grid1d, rowsOf } from "./grid.js";

export const IMPLEMENTED_OPS: OpName[] = ["rms_norm", "softmax"];

/** x / sqrt(mean(x²) + eps) · weight over the last axis; weight [cols] may be f32, f16 or bf16. */
export function rmsNorm(runtime: GpuRuntime, x: GpuTensor, weight: GpuTensor, eps: number): GpuTensor {
  const { rows, cols } = rowsOf("rms_norm", x);
  if (weight.shape.length !== 1 || weight.shape[0] !== cols) {
    throw new Error(`rms_norm: weight ${describeShape(weight.shape)} does not match x ${describeShape(x.shape)}`);
  }
  if (weight.dtype !== "f32" && weight.dtype !== "f16" && weight.dtype !== "bf16") {
    throw new Error(`rms_norm: weight must be f32, f16 or bf16, got ${weight.dtype}`);
  }
  const out = runtime.allocate(x.shape, "f32");
  runtime.dispatch({
    file: "norm_rms.wgsl",
    entryPoint: `rms_norm_${weight.dtype}`,
    params: new Params().u32(rows).u32(cols).f32(eps),
    bindings: [x, weight, out],
    workgroups: grid1d(rows, 1),
  });
  return out;
}

/** Softmax over the last axis, stable for any magnitude (the row max is subtracted). */
export function softmax(runtime: GpuRuntime, x: GpuTensor): GpuTensor {
  const { rows, cols } = rowsOf("softmax", x);
  const out = runtime.allocate(x.shape, "f32");
  runtime.dispatch({
    file: "norm_softmax.wgsl",
    entryPoint: "softmax",
    params: new Params().u32(rows).u32(cols),
    bindings: [x, out],
    workgroups: grid1d(rows, 1),
  });
  return out;
}
