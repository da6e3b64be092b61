/** argmax and top-k over rows (kernels/sampling_argmax.wgsl, kernels/sampling_top_k.wgsl). */
import type { OpName } from "../../contract.js";
import { Params, type GpuRuntime, type GpuTensor } from "../runtime.js";
import { describeShape, grid1d, rowsOf } from "./grid.js";

export const IMPLEMENTED_OPS: OpName[] = ["argmax", "top_k"];

/** The top-k kernel keeps one sorted candidate per thread of its 256-thread workgroup. */
export const MAX_TOP_K = 256;

/** Index of the largest value of each row of x [..., N] → u32 [...]; lowest index on ties. */
export function argmax(runtime: GpuRuntime, x: GpuTensor): GpuTensor {
  const { rows, cols } = rowsOf("argmax", x);
  const out = runtime.allocate(x.shape.slice(0, -1), "u32");
  runtime.dispatch({
    file: "sampling_argmax.wgsl",
    entryPoint: "argmax",
    params: new Params().u32(rows).u32(cols),
    bindings: [x, out],
    workgroups: grid1d(rows, 1),
  });
  return out;
}

/** The k largest values of each row of x [..., N], descending → values f32 [..., k], indices u32 [..., k]. */
export function topK(runtime: GpuRuntime, x: GpuTensor, k: number): { values: GpuTensor; indices: GpuTensor } {
  const { rows, cols } = rowsOf("top_k", x);
  if (!Number.isInteger(k) || k < 1 || k > MAX_TOP_K || k > cols) {
    throw new Error(
      `top_k: k = ${k} is not possible for x ${describeShape(x.shape)}: k must be an integer from 1 to ` +
        `min(${MAX_TOP_K}, ${cols})`,
    );
  }
  const shape = [...x.shape.slice(0, -1), k];
  const values = runtime.allocate(shape, "f32");
  const indices = runtime.allocate(shape, "u32");
  const indexBits = 32 - Math.clz32(cols - 1); // the index key is cols − 1 − index
  runtime.dispatch({
    file: "sampling_top_k.wgsl",
    entryPoint: "top_k",
    params: new Params()
      .u32(rows)
      .u32(cols)
      .u32(k)
      .u32(Math.ceil(indexBits / 8))
      .u32(2 ** Math.ceil(Math.log2(k))),
    bindings: [x, values, indices],
    workgroups: grid1d(rows, 1),
  });
  return { values, indices };
}
