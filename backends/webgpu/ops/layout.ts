/** slice, concat and transpose as strided copies (kernels/layout.wgsl); reshape is a view. */
import type { OpName } from "../../contract.js";
import type { GpuRuntime, GpuTensor } from "../runtime.js";
import { unimplemented } from "./unimplemented.js";

export const IMPLEMENTED_OPS: OpName[] = [];

export function slice(_runtime: GpuRuntime, _x: GpuTensor, _axis: number, _start: number, _end: number): GpuTensor {
  return unimplemented("slice");
}

export function concat(_runtime: GpuRuntime, _tensors: readonly GpuTensor[], _axis: number): GpuTensor {
  return unimplemented("concat");
}

export function transpose(_runtime: GpuRuntime, _x: GpuTensor, _permutation: readonly number[]): GpuTensor {
  return unimplemented("transpose");
}
