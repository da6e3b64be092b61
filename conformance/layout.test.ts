import { describe, expect, it } from "vitest";
import type { DType, HostArray } from "../backends/contract.js";
import * as oracle from "./oracle/layout.js";
import { backendFor, backendsUnderTest, poison } from "./support/backends.js";
import { checkEqual } from "./support/compare.js";
import { random } from "./support/random.js";

// Layout ops move bits, so results must match exactly, for every 4-byte dtype.

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Distinct values of the dtype (f32 with a fraction, u32 above 2³¹, negative i32). */
function data(name: string, dtype: DType, shape: readonly number[]): HostArray {
  const rng = random(name);
  const count = sizeOf(shape);
  if (dtype === "u32") return Uint32Array.from({ length: count }, () => rng.integer(2 ** 32));
  if (dtype === "i32") return Int32Array.from({ length: count }, () => rng.integer(2 ** 32) - 2 ** 31);
  return rng.normals(count, 10);
}

const SLICES: { shape: number[]; axis: number; start: number; end: number; dtype: DType }[] = [
  { shape: [9, 13], axis: 0, start: 2, end: 7, dtype: "f32" }, // one contiguous run
  { shape: [9, 13], axis: 1, start: 3, end: 12, dtype: "f32" },
  { shape: [5, 7, 9], axis: 1, start: 2, end: 6, dtype: "u32" },
  { shape: [5, 7, 9], axis: -1, start: 8, end: 9, dtype: "i32" },
  { shape: [3, 5, 7, 2], axis: 2, start: 1, end: 6, dtype: "f32" },
  { shape: [1, 1, 37, 11], axis: 2, start: 36, end: 37, dtype: "f32" }, // the last row, as for logits
  { shape: [257, 3, 129], axis: 2, start: 64, end: 129, dtype: "f32" }, // more than one grid row
];

const CONCATS: { shapes: number[][]; axis: number; dtype: DType }[] = [
  {
    shapes: [
      [3, 5],
      [4, 5],
      [1, 5],
    ],
    axis: 0,
    dtype: "f32",
  },
  {
    shapes: [
      [3, 5],
      [3, 2],
      [3, 7],
    ],
    axis: 1,
    dtype: "i32",
  },
  {
    shapes: [
      [2, 3, 5],
      [2, 4, 5],
    ],
    axis: 1,
    dtype: "u32",
  },
  {
    shapes: [
      [2, 3, 5, 7],
      [2, 3, 5, 1],
      [2, 3, 5, 3],
    ],
    axis: -1,
    dtype: "f32",
  },
  {
    shapes: [
      [1, 3, 5, 7],
      [2, 3, 5, 7],
    ],
    axis: 0,
    dtype: "f32",
  },
  { shapes: [[17]], axis: 0, dtype: "f32" },
];

const TRANSPOSES: { shape: number[]; permutation: number[]; dtype: DType }[] = [
  { shape: [33, 257], permutation: [1, 0], dtype: "f32" },
  { shape: [3, 5, 7], permutation: [2, 0, 1], dtype: "i32" },
  { shape: [7, 3, 5, 9], permutation: [0, 2, 1, 3], dtype: "f32" }, // [T, H, D] ↔ [H, T, D] per batch
  { shape: [2, 3, 5, 7], permutation: [3, 1, 2, 0], dtype: "u32" },
  { shape: [4, 1, 6], permutation: [1, 0, 2], dtype: "f32" }, // moves only a 1: stays contiguous
  { shape: [11], permutation: [0], dtype: "f32" },
];

for (const backendName of backendsUnderTest()) {
  describe(`${backendName}: slice, concat and transpose against the reference`, () => {
    for (const { shape, axis, start, end, dtype } of SLICES) {
      it(`slice ${dtype} ${JSON.stringify(shape)} axis ${axis} [${start}, ${end})`, async () => {
        const backend = await backendFor(backendName);
        const x = data(`slice ${JSON.stringify(shape)} ${axis}`, dtype, shape);
        const tx = backend.upload(x, shape, dtype);
        const resolved = axis < 0 ? axis + shape.length : axis;
        const expected = oracle.slice(x, shape, resolved, start, end);
        poison(backend, expected.length);
        const out = backend.slice(tx, axis, start, end);
        expect(out.shape).toEqual(shape.map((dim, d) => (d === resolved ? end - start : dim)));
        expect(out.dtype).toBe(dtype);
        checkEqual("slice", shape, await backend.read(out), expected);
        backend.free(out);
        backend.free(tx);
      });
    }

    for (const { shapes, axis, dtype } of CONCATS) {
      it(`concat ${dtype} ${JSON.stringify(shapes)} along axis ${axis}`, async () => {
        const backend = await backendFor(backendName);
        const parts = shapes.map((shape, i) => ({
          data: data(`concat ${JSON.stringify(shapes)} ${i}`, dtype, shape),
          shape,
        }));
        const tensors = parts.map((part) => backend.upload(part.data, part.shape, dtype));
        const resolved = axis < 0 ? axis + shapes[0]!.length : axis;
        const expected = oracle.concat(parts, resolved);
        poison(backend, expected.length);
        const out = backend.concat(tensors, axis);
        checkEqual("concat", out.shape, await backend.read(out), expected);
        for (const tensor of [out, ...tensors]) backend.free(tensor);
      });
    }

    for (const { shape, permutation, dtype } of TRANSPOSES) {
      it(`transpose ${dtype} ${JSON.stringify(shape)} by ${JSON.stringify(permutation)}`, async () => {
        const backend = await backendFor(backendName);
        const x = data(`transpose ${JSON.stringify(shape)}`, dtype, shape);
        const tx = backend.upload(x, shape, dtype);
        poison(backend, x.length);
        const out = backend.transpose(tx, permutation);
        expect(out.shape).toEqual(permutation.map((axis) => shape[axis]));
        checkEqual("transpose", shape, await backend.read(out), oracle.transpose(x, shape, permutation));
        backend.free(out);
        backend.free(tx);
      });
    }

    it("an empty slice has a zero-length axis", async () => {
      const backend = await backendFor(backendName);
      const tx = backend.upload(new Float32Array(12), [3, 4], "f32");
      expect(backend.slice(tx, 1, 2, 2).shape).toEqual([3, 0]);
    });

    it("refuses what it cannot copy, naming the op and the shapes", async () => {
      const backend = await backendFor(backendName);
      const tx = backend.upload(new Float32Array(12), [3, 4], "f32");
      const other = backend.upload(new Float32Array(10), [2, 5], "f32");
      const half = backend.upload(new Uint16Array(12), [3, 4], "bf16");
      expect(() => backend.slice(tx, 1, 3, 5)).toThrow("slice: [3, 5) is out of range for axis 1 of [3, 4]");
      expect(() => backend.slice(tx, 2, 0, 1)).toThrow("slice: axis 2 is out of range for [3, 4]");
      expect(() => backend.slice(half, 0, 0, 1)).toThrow(
        "slice: supports 4-byte dtypes (f32, u32, i32), got bf16 [3, 4]",
      );
      expect(() => backend.concat([tx, other], 0)).toThrow(
        "concat: cannot join f32, f32 tensors [3, 4], [2, 5] along axis 0",
      );
      expect(() => backend.transpose(tx, [0, 0])).toThrow(
        "transpose: [0, 0] is not a permutation of the axes of [3, 4]",
      );
    });
  });
}
