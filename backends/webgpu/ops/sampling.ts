/** argmax and top-k over rows (kernels/sampling.wgsl). */
import type { OpName } from "../../contract.js";
import type { GpuRuntime, GpuTensor } from "../runtime.js";
import { unimplemented } from "./unimplemented.js";

export const IMPLEMENTED_OPS: OpName[] = [];

export function argmax(_runtime: GpuRuntime, _x: GpuTensor): GpuTensor {
  return unimplemented("argmax");
}

export function topK(_runtime: GpuRuntime, _x: GpuTensor, _k: number): { values: GpuTensor; indices: GpuTensor } {
  return unimplemented("top_k");
}
