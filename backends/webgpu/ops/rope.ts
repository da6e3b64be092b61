/** Rotary position embedding (kernels/rope.wgsl). */
import type { OpName, RopeOptions } from "../../contract.js";
import type { GpuRuntime, GpuTensor } from "../runtime.js";
import { unimplemented } from "./unimplemented.js";

export const IMPLEMENTED_OPS: OpName[] = [];

export function rope(_runtime: GpuRuntime, _x: GpuTensor, _positions: GpuTensor, _options: RopeOptions): GpuTensor {
  return unimplemented("rope");
}
