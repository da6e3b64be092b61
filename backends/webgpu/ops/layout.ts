/**
 * slice, concat and transpose as strided copies of 4-byte elements (kernels/layout.wgsl); reshape is
 * a view (backend.ts). A copy that is one contiguous run on both sides (a slice or concat along the
 * first axis that is not 1) becomes a plain buffer copy instead of a dispatch.
 */
import { DTYPE_BYTES, type OpName } from "../../contract.js";
import { Params, type GpuRuntime, type GpuTensor } from "../runtime.js";
import { describeShape, grid1d, sizeOf } from "./grid.js";

export const IMPLEMENTED_OPS: OpName[] = ["slice", "concat", "transpose"];

const MAX_RANK = 4;

/** A box of elements copied from one tensor into another; offsets and strides count elements. */
interface StridedCopy {
  box: readonly number[];
  sourceOffset: number;
  sourceStrides: readonly number[];
  destinationOffset: number;
  destinationStrides: readonly number[];
}

function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) strides[d] = strides[d + 1]! * shape[d + 1]!;
  return strides;
}

function requireCopyable(op: string, x: GpuTensor): void {
  if (DTYPE_BYTES[x.dtype] !== 4) {
    throw new Error(`${op}: supports 4-byte dtypes (f32, u32, i32), got ${x.dtype} ${describeShape(x.shape)}`);
  }
  if (x.shape.length > MAX_RANK) {
    throw new Error(`${op}: supports up to ${MAX_RANK} dimensions, got ${describeShape(x.shape)}`);
  }
}

/** A numpy-style axis (negative counts from the end) as an index into the shape. */
function resolveAxis(op: string, axis: number, shape: readonly number[]): number {
  const resolved = axis < 0 ? axis + shape.length : axis;
  if (!Number.isInteger(axis) || resolved < 0 || resolved >= shape.length) {
    throw new Error(`${op}: axis ${axis} is out of range for ${describeShape(shape)}`);
  }
  return resolved;
}

/** Whether the box covers one contiguous run of elements with these strides. */
function isContiguous(box: readonly number[], strides: readonly number[]): boolean {
  let expected = 1;
  for (let d = box.length - 1; d >= 0; d--) {
    if (box[d] === 1) continue;
    if (strides[d] !== expected) return false;
    expected *= box[d]!;
  }
  return true;
}

function stridedCopy(runtime: GpuRuntime, source: GpuTensor, destination: GpuTensor, copy: StridedCopy): void {
  const count = sizeOf(copy.box);
  if (count === 0) return;
  if (isContiguous(copy.box, copy.sourceStrides) && isContiguous(copy.box, copy.destinationStrides)) {
    runtime.copy(source, copy.sourceOffset * 4, destination, copy.destinationOffset * 4, count * 4);
    return;
  }
  // Leading 1s (stride 0) fill the box out to the kernel's four dimensions.
  const padding = MAX_RANK - copy.box.length;
  const pad = (values: readonly number[], fill: number) => [...new Array<number>(padding).fill(fill), ...values];
  const box = pad(copy.box, 1);
  const sourceStrides = pad(copy.sourceStrides, 0);
  const destinationStrides = pad(copy.destinationStrides, 0);
  const params = new Params().u32(count).u32(copy.sourceOffset).u32(copy.destinationOffset);
  for (const dim of box.slice(1)) params.u32(dim);
  for (const stride of sourceStrides) params.u32(stride);
  for (const stride of destinationStrides) params.u32(stride);
  runtime.dispatch({
    file: "layout.wgsl",
    entryPoint: "strided_copy",
    params,
    bindings: [source, destination],
    workgroups: grid1d(count, 256),
  });
}

/** x[start:end] along `axis` (negative axes count from the end). */
export function slice(runtime: GpuRuntime, x: GpuTensor, axis: number, start: number, end: number): GpuTensor {
  requireCopyable("slice", x);
  const d = resolveAxis("slice", axis, x.shape);
  const length = x.shape[d]!;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > length) {
    throw new Error(`slice: [${start}, ${end}) is out of range for axis ${axis} of ${describeShape(x.shape)}`);
  }
  const shape = x.shape.map((dim, i) => (i === d ? end - start : dim));
  const out = runtime.allocate(shape, x.dtype);
  const sourceStrides = rowMajorStrides(x.shape);
  stridedCopy(runtime, x, out, {
    box: shape,
    sourceOffset: start * sourceStrides[d]!,
    sourceStrides,
    destinationOffset: 0,
    destinationStrides: rowMajorStrides(shape),
  });
  return out;
}

/** The tensors joined along `axis`; every other dimension and the dtype must agree. */
export function concat(runtime: GpuRuntime, tensors: readonly GpuTensor[], axis: number): GpuTensor {
  const first = tensors[0];
  if (!first) throw new Error("concat: needs at least one tensor");
  tensors.forEach((tensor) => requireCopyable("concat", tensor));
  const d = resolveAxis("concat", axis, first.shape);
  const shapes = tensors.map((tensor) => describeShape(tensor.shape)).join(", ");
  for (const tensor of tensors) {
    const agrees =
      tensor.dtype === first.dtype &&
      tensor.shape.length === first.shape.length &&
      tensor.shape.every((dim, i) => i === d || dim === first.shape[i]);
    if (!agrees) {
      throw new Error(
        `concat: cannot join ${tensors.map((t) => t.dtype).join(", ")} tensors ${shapes} along axis ${axis}`,
      );
    }
  }
  const shape = first.shape.map((dim, i) => (i === d ? tensors.reduce((sum, t) => sum + t.shape[d]!, 0) : dim));
  const out = runtime.allocate(shape, first.dtype);
  const destinationStrides = rowMajorStrides(shape);
  let position = 0;
  for (const tensor of tensors) {
    stridedCopy(runtime, tensor, out, {
      box: tensor.shape,
      sourceOffset: 0,
      sourceStrides: rowMajorStrides(tensor.shape),
      destinationOffset: position * destinationStrides[d]!,
      destinationStrides,
    });
    position += tensor.shape[d]!;
  }
  return out;
}

/** Dimensions reordered: output dimension i is input dimension permutation[i]. */
export function transpose(runtime: GpuRuntime, x: GpuTensor, permutation: readonly number[]): GpuTensor {
  requireCopyable("transpose", x);
  const isPermutation =
    permutation.length === x.shape.length && [...permutation].sort((a, b) => a - b).every((value, i) => value === i);
  if (!isPermutation) {
    throw new Error(
      `transpose: [${permutation.join(", ")}] is not a permutation of the axes of ${describeShape(x.shape)}`,
    );
  }
  const shape = permutation.map((axis) => x.shape[axis]!);
  const inputStrides = rowMajorStrides(x.shape);
  const out = runtime.allocate(shape, x.dtype);
  stridedCopy(runtime, x, out, {
    box: shape,
    sourceOffset: 0,
    sourceStrides: permutation.map((axis) => inputStrides[axis]!),
    destinationOffset: 0,
    destinationStrides: rowMajorStrides(shape),
  });
  return out;
}
