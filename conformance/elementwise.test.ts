import { describe, expect, it } from "vitest";
import * as oracle from "./oracle/elementwise.js";
import { backendFor, backendsUnderTest, poison } from "./support/backends.js";
import { TOLERANCE, checkClose } from "./support/compare.js";
import { random } from "./support/random.js";

// Odd and non-multiple sizes on purpose: partial workgroups, one element, and a tensor whose grid
// needs the second dimension (over 65,535 workgroups of 256).
const SHAPES: number[][] = [[1], [7, 13], [33, 257], [3, 1000, 11]];

for (const backendName of backendsUnderTest()) {
  describe(`${backendName}: elementwise ops against float64`, () => {
    for (const shape of SHAPES) {
      const count = shape.reduce((a, b) => a * b, 1);
      it(`add, mul, scale, silu, gelu_tanh on ${JSON.stringify(shape)}`, async () => {
        const backend = await backendFor(backendName);
        const rng = random(`elementwise ${JSON.stringify(shape)}`);
        const a = rng.floats(count, 6);
        const b = rng.floats(count, 3);
        const ta = backend.upload(a, shape, "f32");
        const tb = backend.upload(b, shape, "f32");
        const cases: [string, () => ReturnType<typeof backend.add>, Float64Array][] = [
          ["add", () => backend.add(ta, tb), oracle.add(a, b)],
          ["mul", () => backend.mul(ta, tb), oracle.mul(a, b)],
          ["scale", () => backend.scale(ta, -0.37), oracle.scale(a, -0.37)],
          ["silu", () => backend.silu(ta), oracle.silu(a)],
          ["gelu_tanh", () => backend.geluTanh(ta), oracle.geluTanh(a)],
        ];
        for (const [op, run, expected] of cases) {
          poison(backend, count);
          const out = run();
          checkClose(op, shape, await backend.read(out), expected, TOLERANCE.f32);
          backend.free(out);
        }
        backend.free(ta);
        backend.free(tb);
      });
    }

    it("scale covers tensors whose grid needs a second dimension (over 65,535 workgroups)", async () => {
      const backend = await backendFor(backendName);
      const count = 65_535 * 256 + 1001;
      const x = random("elementwise 2-D grid").floats(count);
      const tx = backend.upload(x, [count], "f32");
      poison(backend, count);
      checkClose("scale", [count], await backend.read(backend.scale(tx, 1.5)), oracle.scale(x, 1.5), TOLERANCE.f32);
      backend.free(tx);
    });

    it("add and mul broadcast one row (a bias) over every row", async () => {
      const backend = await backendFor(backendName);
      const rng = random("elementwise broadcast");
      const [rows, cols] = [37, 129];
      const a = rng.floats(rows * cols);
      const bias = rng.floats(cols);
      const ta = backend.upload(a, [rows, cols], "f32");
      const tb = backend.upload(bias, [cols], "f32");
      poison(backend, rows * cols);
      checkClose(
        "add(bias)",
        [rows, cols],
        await backend.read(backend.add(ta, tb)),
        oracle.add(a, bias),
        TOLERANCE.f32,
      );
      checkClose("mul(row)", [rows, cols], await backend.read(backend.mul(ta, tb)), oracle.mul(a, bias), TOLERANCE.f32);
    });

    it("refuses shapes that do not broadcast, naming both", async () => {
      const backend = await backendFor(backendName);
      const ta = backend.upload(new Float32Array(6), [2, 3], "f32");
      const tb = backend.upload(new Float32Array(2), [2], "f32");
      expect(() => backend.add(ta, tb)).toThrow("[2, 3] with [2]");
    });
  });
}
