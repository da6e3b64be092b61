/** Shape helpers shared by the op modules, and workgroup grids for 1-D work larger than one dimension allows. */
import type { GpuTensor } from "../runtime.js";
import { describeShape, sizeOf } from "../../op-checks.js";

export { describeShape, sizeOf };

/** Activations are f32 by contract; anything else is a caller's mistake worth naming. */
export function requireF32(op: string, ...tensors: GpuTensor[]): void {
  for (const tensor of tensors) {
    if (tensor.dtype !== "f32")
      throw new Error(`${op}: expects f32 activations, got ${tensor.dtype} ${describeShape(tensor.shape)}`);
  }
}

/** Rows and row length of an f32 tensor processed along its last axis. */
export function rowsOf(op: string, x: GpuTensor): { rows: number; cols: number } {
  requireF32(op, x);
  const cols = x.shape[x.shape.length - 1] ?? 0;
  if (x.shape.length === 0 || cols === 0) {
    throw new Error(`${op}: needs a non-empty last axis, got ${describeShape(x.shape)}`);
  }
  return { rows: sizeOf(x.shape) / cols, cols };
}

/** Workgroups for `items`, spilling into a second dimension past 65,535 per dimension. */
export function grid1d(items: number, itemsPerWorkgroup: number, maxPerDimension = 65535): [number, number] {
  const groups = Math.max(1, Math.ceil(items / itemsPerWorkgroup));
  if (groups <= maxPerDimension) return [groups, 1];
  return [maxPerDimension, Math.ceil(groups / maxPerDimension)];
}
