/** matmul (plain and MLX-affine-quantized weights) and embedding gather (kernels/matmul*.wgsl, embedding.wgsl). */
import type { Matrix, OpName } from "../../contract.js";
import type { GpuRuntime, GpuTensor } from "../runtime.js";
import { unimplemented } from "./unimplemented.js";

export const IMPLEMENTED_OPS: OpName[] = [];

export function matmul(_runtime: GpuRuntime, _x: GpuTensor, _w: Matrix): GpuTensor {
  return unimplemented("matmul");
}

export function embedding(_runtime: GpuRuntime, _table: Matrix, _ids: GpuTensor): GpuTensor {
  return unimplemented("embedding");
}
