/** rms_norm and softmax over the last axis (kernels/norm.wgsl). */
import type { OpName } from "../../contract.js";
import type { GpuRuntime, GpuTensor } from "../runtime.js";
import { unimplemented } from "./unimplemented.js";

export const IMPLEMENTED_OPS: OpName[] = [];

export function rmsNorm(_runtime: GpuRuntime, _x: GpuTensor, _weight: GpuTensor, _eps: number): GpuTensor {
  return unimplemented("rms_norm");
}

export function softmax(_runtime: GpuRuntime, _x: GpuTensor): GpuTensor {
  return unimplemented("softmax");
}
