import { describe, expect, it } from "vitest";
import * as oracle from "./oracle/sampling.js";
import { backendFor, backendsUnderTest, poison } from "./support/backends.js";
import { checkEqual } from "./support/compare.js";
import { random } from "./support/random.js";

// argmax and top-k only compare and copy, so every result must equal the reference exactly.

/** NaN as a value checkEqual can match (NaN !== NaN). */
const comparable = (values: ArrayLike<number>) =>
  Float64Array.from({ length: values.length }, (_, i) => (Number.isNaN(values[i]!) ? -Number.MAX_VALUE : values[i]!));

/** Random logits with the cases sampling must get right planted in the first rows. */
function logits(name: string, rows: number, cols: number, levels = 0): Float32Array {
  const rng = random(name);
  // levels > 0 rounds to a coarse grid, so many values tie (as in quantized or capped logits).
  const x = rng.normals(rows * cols, 4).map((v) => (levels > 0 ? Math.round(v * levels) / levels : v));
  const rowMax = (r: number) => x.subarray(r * cols, (r + 1) * cols).reduce((a, b) => Math.max(a, b), -Infinity);
  if (rows > 0 && cols > 2) {
    // Row 0: the maximum twice; the lower index must win.
    const top = rowMax(0) + 1;
    x[rng.integer(cols - 1)] = top;
    x[cols - 1] = top;
  }
  if (rows > 1) x[2 * cols - 1] = rowMax(1) + 0.5; // row 1: the maximum at the last index
  if (rows > 2 && cols > 3) {
    // Row 2: NaN, larger than nothing, at the front and at the back.
    x[2 * cols] = NaN;
    x[3 * cols - 1] = NaN;
  }
  return x;
}

const ARGMAX_SHAPES: [number, number][] = [
  [1, 1],
  [7, 13],
  [5, 255],
  [64, 1001],
  [2, 262_144],
];

const TOP_K_CASES: { rows: number; cols: number; k: number; levels: number }[] = [
  { rows: 3, cols: 1, k: 1, levels: 0 },
  { rows: 4, cols: 7, k: 7, levels: 0 },
  { rows: 5, cols: 1000, k: 1, levels: 0 },
  { rows: 5, cols: 1000, k: 40, levels: 0 },
  { rows: 3, cols: 256, k: 256, levels: 0 },
  { rows: 4, cols: 3001, k: 256, levels: 0 },
  // Heavy ties: a handful of distinct values, so selection has to break ties by index.
  { rows: 4, cols: 5000, k: 40, levels: 1 },
  { rows: 3, cols: 70_001, k: 256, levels: 2 },
  { rows: 2, cols: 262_144, k: 40, levels: 0 },
  { rows: 1, cols: 262_144, k: 256, levels: 8 },
];

for (const backendName of backendsUnderTest()) {
  describe(`${backendName}: argmax and top_k against the reference`, () => {
    for (const [rows, cols] of ARGMAX_SHAPES) {
      it(`argmax on [${rows}, ${cols}] with ties, a last-index maximum and NaN`, async () => {
        const backend = await backendFor(backendName);
        const x = logits(`argmax ${rows}x${cols}`, rows, cols);
        const tx = backend.upload(x, [rows, cols], "f32");
        poison(backend, rows);
        const out = backend.argmax(tx);
        expect(out.shape).toEqual([rows]);
        checkEqual("argmax", [rows, cols], await backend.read(out), oracle.argmax(x, cols));
        backend.free(out);
        backend.free(tx);
      });
    }

    it("argmax of rows of equal values, −inf and all NaN", async () => {
      const backend = await backendFor(backendName);
      const cols = 300;
      const x = new Float32Array(4 * cols).fill(2.5);
      x.fill(-Infinity, cols, 2 * cols);
      x.fill(NaN, 2 * cols, 3 * cols);
      x.fill(-Infinity, 3 * cols, 4 * cols)[4 * cols - 2] = -1e30;
      const tx = backend.upload(x, [4, cols], "f32");
      poison(backend, 4);
      checkEqual("argmax", [4, cols], await backend.read(backend.argmax(tx)), [0, 0, 0, cols - 2]);
    });

    for (const { rows, cols, k, levels } of TOP_K_CASES) {
      const ties = levels > 0 ? ", heavy ties" : "";
      it(`top_k k=${k} on [${rows}, ${cols}]${ties}`, async () => {
        const backend = await backendFor(backendName);
        const x = logits(`top_k ${rows}x${cols} k${k} ${levels}`, rows, cols, levels);
        const tx = backend.upload(x, [rows, cols], "f32");
        poison(backend, rows * k);
        const { values, indices } = backend.topK(tx, k);
        expect(values.shape).toEqual([rows, k]);
        const expected = oracle.topK(x, cols, k);
        checkEqual(`top_k(k=${k}) indices`, [rows, cols], await backend.read(indices), expected.indices);
        const actualValues = comparable(await backend.read(values));
        checkEqual(`top_k(k=${k}) values`, [rows, cols], actualValues, comparable(expected.values));
        for (const tensor of [values, indices, tx]) backend.free(tensor);
      });
    }

    it("top_k ranks NaN after every number and −0 level with +0", async () => {
      const backend = await backendFor(backendName);
      const x = Float32Array.from([NaN, 0, -Infinity, -0, 3, NaN, 0, -2, Infinity, -0]);
      const tx = backend.upload(x, [1, x.length], "f32");
      const { values, indices } = backend.topK(tx, x.length);
      checkEqual("top_k indices", [1, x.length], await backend.read(indices), [8, 4, 1, 3, 6, 9, 7, 2, 0, 5]);
      const expected = oracle.topK(x, x.length, x.length);
      checkEqual("top_k values", [1, x.length], comparable(await backend.read(values)), comparable(expected.values));
    });

    it("refuses k above 256 or above the row length, naming k and the shape", async () => {
      const backend = await backendFor(backendName);
      const wide = backend.upload(new Float32Array(2 * 300), [2, 300], "f32");
      const narrow = backend.upload(new Float32Array(2 * 10), [2, 10], "f32");
      expect(() => backend.topK(wide, 257)).toThrow("top_k: k = 257 is not possible for x [2, 300]");
      expect(() => backend.topK(narrow, 11)).toThrow("top_k: k = 11 is not possible for x [2, 10]");
      expect(() => backend.topK(narrow, 0)).toThrow("k must be an integer from 1 to min(256, 10)");
    });
  });
}
