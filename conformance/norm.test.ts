import { describe, expect, it } from "vitest";
import type { DType } from "../backends/contract.js";
import * as dtypes from "./oracle/dtypes.js";
import * as oracle from "./oracle/norm.js";
import { backendFor, backendsUnderTest, poison } from "./support/backends.js";
import { TOLERANCE, checkClose } from "./support/compare.js";
import { random } from "./support/random.js";

// Odd rows and widths: fewer columns than threads, non-multiples of the workgroup, the widest hidden
// size we support (16,384), and more rows than one grid dimension holds (65,535).
const RMS_SHAPES: [number, number][] = [
  [1, 1],
  [7, 13],
  [5, 4099],
  [3, 16384],
  [2, 16383],
  [65_537, 3],
];

/** The weight as the backend stores it and as the oracle reads it (the exact 16-bit values). */
function weightIn(dtype: DType, values: Float32Array): { stored: Float32Array | Uint16Array; exact: Float64Array } {
  if (dtype === "f32") return { stored: values, exact: Float64Array.from(values) };
  const encode = dtype === "f16" ? dtypes.floatToHalfBits : dtypes.floatToBfloatBits;
  const decode = dtype === "f16" ? dtypes.halfBitsToFloat : dtypes.bfloatBitsToFloat;
  const stored = Uint16Array.from(values, encode);
  return { stored, exact: Float64Array.from(stored, decode) };
}

for (const backendName of backendsUnderTest()) {
  describe(`${backendName}: rms_norm and softmax against float64`, () => {
    for (const [rows, cols] of RMS_SHAPES) {
      it(`rms_norm with f32, f16 and bf16 weights on [${rows}, ${cols}]`, async () => {
        const backend = await backendFor(backendName);
        const rng = random(`rms_norm ${rows}x${cols}`);
        const x = rng.normals(rows * cols, 3);
        const tx = backend.upload(x, [rows, cols], "f32");
        for (const dtype of ["f32", "f16", "bf16"] as const) {
          const { stored, exact } = weightIn(dtype, rng.floats(cols, 2));
          const weight = backend.upload(stored, [cols], dtype, "weights");
          poison(backend, rows * cols);
          const out = backend.rmsNorm(tx, weight, 1e-6);
          // The oracle reads the same rounded 16-bit weights, so every dtype is held to f32 math.
          checkClose(
            `rms_norm(${dtype} weight)`,
            [rows, cols],
            await backend.read(out),
            oracle.rmsNorm(x, exact, 1e-6),
            TOLERANCE.f32,
          );
          backend.free(out);
          backend.free(weight);
        }
        backend.free(tx);
      });
    }

    it("rms_norm: eps dominates rows of tiny values", async () => {
      const backend = await backendFor(backendName);
      const rng = random("rms_norm eps");
      const [rows, cols] = [4, 300];
      const x = rng.floats(rows * cols, 1e-4);
      const weight = rng.floats(cols, 1);
      const tx = backend.upload(x, [rows, cols], "f32");
      const tw = backend.upload(weight, [cols], "f32", "weights");
      poison(backend, rows * cols);
      const out = backend.rmsNorm(tx, tw, 1e-5);
      checkClose(
        "rms_norm(eps 1e-5)",
        [rows, cols],
        await backend.read(out),
        oracle.rmsNorm(x, weight, 1e-5),
        TOLERANCE.f32,
      );
    });

    const SOFTMAX_CASES: { rows: number; cols: number; scale: number; offset: number }[] = [
      { rows: 1, cols: 1, scale: 1, offset: 0 },
      { rows: 7, cols: 13, scale: 3, offset: 0 },
      { rows: 3, cols: 1000, scale: 1, offset: 0 },
      // Large magnitudes: exp overflows f32 beyond 88, so only subtracting the row max keeps these finite.
      { rows: 5, cols: 777, scale: 1000, offset: 0 },
      { rows: 4, cols: 513, scale: 20, offset: 30_000 },
      { rows: 3, cols: 300, scale: 50, offset: -1e6 },
      // A vocabulary-wide row (Gemma 3's 262,144 logits), as sampling with temperature needs.
      { rows: 2, cols: 262_144, scale: 10, offset: 0 },
    ];
    for (const { rows, cols, scale, offset } of SOFTMAX_CASES) {
      it(`softmax on [${rows}, ${cols}] with inputs ${offset} ± ${scale}`, async () => {
        const backend = await backendFor(backendName);
        const x = random(`softmax ${rows}x${cols} ${scale} ${offset}`)
          .normals(rows * cols, scale)
          .map((v) => v + offset);
        const tx = backend.upload(x, [rows, cols], "f32");
        poison(backend, rows * cols);
        const out = backend.softmax(tx);
        const actual = await backend.read(out);
        // f32 math; every output of a stable softmax lies in [0, 1] and each row sums to one.
        checkClose("softmax", [rows, cols], actual, oracle.softmax(x, cols), TOLERANCE.f32);
        backend.free(out);
        backend.free(tx);
      });
    }

    it("softmax gives masked (−inf) entries exactly zero", async () => {
      const backend = await backendFor(backendName);
      const [rows, cols] = [3, 37];
      const x = random("softmax masked").normals(rows * cols, 4);
      for (let c = 20; c < cols; c++) x[cols + c] = -Infinity; // row 1: a causal mask's tail
      for (let c = 0; c < cols; c += 2) x[2 * cols + c] = -Infinity; // row 2: every other entry
      const tx = backend.upload(x, [rows, cols], "f32");
      poison(backend, rows * cols);
      const actual = await backend.read(backend.softmax(tx));
      checkClose("softmax(masked)", [rows, cols], actual, oracle.softmax(x, cols), TOLERANCE.f32);
      for (let c = 20; c < cols; c++) expect(actual[cols + c]).toBe(0);
    });

    it("refuses a weight that does not match the row length, naming both shapes", async () => {
      const backend = await backendFor(backendName);
      const tx = backend.upload(new Float32Array(6), [2, 3], "f32");
      const tw = backend.upload(new Float32Array(4), [4], "f32");
      expect(() => backend.rmsNorm(tx, tw, 1e-6)).toThrow("weight [4] does not match x [2, 3]");
    });
  });
}
