import { describe, expect, it } from "vitest";
import type { RopeOptions } from "../backends/contract.js";
import * as oracle from "./oracle/rope.js";
import { backendFor, backendsUnderTest, poison } from "./support/backends.js";
import { TOLERANCE, checkClose } from "./support/compare.js";
import { random, type Random } from "./support/random.js";

interface RopeCase {
  name: string;
  shape: [tokens: number, heads: number, headDim: number];
  options: RopeOptions;
  positions: (tokens: number, rng: Random) => Int32Array;
}

const contiguous = (start: number) => (tokens: number) => Int32Array.from({ length: tokens }, (_, t) => start + t);
// Shuffled and gapped, as a ragged batch of sequences at different depths gives them.
const scattered = (limit: number) => (tokens: number, rng: Random) =>
  Int32Array.from({ length: tokens }, (_, t) => (t === 0 ? limit : rng.integer(limit + 1)));

/** llama3-style per-pair frequencies: long wavelengths slowed by 8, a smooth band between. */
function llama3Frequencies(dims: number, base: number): Float32Array {
  return Float32Array.from({ length: dims / 2 }, (_, i) => {
    const frequency = base ** ((-2 * i) / dims);
    const wavelength = (2 * Math.PI) / frequency;
    if (wavelength < 8192 / 4) return frequency;
    if (wavelength > 8192) return frequency / 8;
    const smooth = (8192 / wavelength - 1) / 3;
    return (1 - smooth) * (frequency / 8) + smooth * frequency;
  });
}

const CASES: RopeCase[] = [
  {
    name: "halves, base 10000, positions 0…",
    shape: [7, 3, 64],
    options: { dims: 64, traditional: false, base: 10000, scale: 1 },
    positions: contiguous(0),
  },
  {
    name: "interleaved, base 10000",
    shape: [5, 4, 32],
    options: { dims: 32, traditional: true, base: 10000, scale: 1 },
    positions: contiguous(17),
  },
  {
    name: "halves, partial dims 32 of 80",
    shape: [6, 5, 80],
    options: { dims: 32, traditional: false, base: 10000, scale: 1 },
    positions: scattered(4000),
  },
  {
    name: "interleaved, partial dims 22 of 50",
    shape: [3, 7, 50],
    options: { dims: 22, traditional: true, base: 10000, scale: 1 },
    positions: scattered(300),
  },
  {
    name: "halves, base 1000000, scattered positions up to 131072",
    shape: [9, 2, 128],
    options: { dims: 128, traditional: false, base: 1_000_000, scale: 1 },
    positions: scattered(131_072),
  },
  {
    name: "interleaved, base 1000000, scattered positions up to 131072",
    shape: [9, 3, 64],
    options: { dims: 64, traditional: true, base: 1_000_000, scale: 1 },
    positions: scattered(131_072),
  },
  {
    name: "halves, linear scaling 0.125, positions up to 131072",
    shape: [11, 2, 96],
    options: { dims: 96, traditional: false, base: 10000, scale: 0.125 },
    positions: scattered(131_072),
  },
  {
    name: "halves, llama3 inverse frequencies, positions up to 131072",
    shape: [8, 4, 128],
    options: {
      dims: 128,
      traditional: false,
      base: 500000,
      scale: 1,
      inverseFrequencies: llama3Frequencies(128, 500000),
    },
    positions: scattered(131_072),
  },
  {
    name: "interleaved, inverse frequencies with scale 0.125 and partial dims",
    shape: [4, 3, 40],
    options: { dims: 24, traditional: true, base: 1, scale: 0.125, inverseFrequencies: llama3Frequencies(24, 10000) },
    positions: scattered(131_072),
  },
  {
    name: "halves, 513 tokens of one head (more than one workgroup)",
    shape: [513, 1, 18],
    options: { dims: 18, traditional: false, base: 10000, scale: 1 },
    positions: contiguous(100_000),
  },
];

for (const backendName of backendsUnderTest()) {
  describe(`${backendName}: rope against float64`, () => {
    for (const { name, shape, options, positions: makePositions } of CASES) {
      it(`${name} on ${JSON.stringify(shape)}`, async () => {
        const backend = await backendFor(backendName);
        const rng = random(`rope ${name}`);
        const count = shape[0] * shape[1] * shape[2];
        const x = rng.normals(count, 2);
        const positions = makePositions(shape[0], rng);
        const tx = backend.upload(x, shape, "f32");
        const tp = backend.upload(positions, [shape[0]], "i32");
        poison(backend, count);
        const out = backend.rope(tx, tp, options);
        // f32 math even at position 131,072: the kernel reduces the angle modulo a turn in exact
        // integer arithmetic, so the angle is good to ~2e-7 rad at any position. A kernel that formed
        // position·θ as an f32 product would be off by up to 8e-3 rad there and fail this tolerance.
        checkClose(
          `rope(${name})`,
          shape,
          await backend.read(out),
          oracle.rope(x, shape, positions, options),
          TOLERANCE.f32,
        );
        backend.free(out);
        backend.free(tx);
        backend.free(tp);
      });
    }

    it("refuses odd or too many rotated dims, naming the shape", async () => {
      const backend = await backendFor(backendName);
      const tx = backend.upload(new Float32Array(2 * 3 * 8), [2, 3, 8], "f32");
      const tp = backend.upload(new Int32Array(2), [2], "i32");
      const options = { traditional: false, base: 10000, scale: 1 };
      expect(() => backend.rope(tx, tp, { ...options, dims: 7 })).toThrow("rope: x [2, 3, 8]: dims must be even");
      expect(() => backend.rope(tx, tp, { ...options, dims: 10 })).toThrow("dims must be even and in [2, 8], got 10");
    });
  });
}
