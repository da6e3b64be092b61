import { afterEach, describe, expect, it } from "vitest";
import type { Backend, QuantizedMatrix } from "../backends/contract.js";
import type { WebGpuBackend } from "../backends/webgpu/backend.js";
import { overrideBindingLimit, planMatmul, setGemmSplits, setGemvTuning } from "../backends/webgpu/ops/matmul.js";
import type { GpuTensor } from "../backends/webgpu/runtime.js";
import * as oracle from "./oracle/matmul.js";
import { backendFor, backendsUnderTest, poison } from "./support/backends.js";
import { TOLERANCE, checkClose } from "./support/compare.js";
import { uploadQuantizedMatrix } from "./support/weights.js";
import { random, type Random } from "./support/random.js";

// Tolerance: the oracle multiplies the exact values the backend holds (16-bit weights decoded from their
// stored bits, quantized weights as stored-scale·q + stored-bias), so rounding of the weights is not
// part of the comparison and every dtype is held to the f32 tolerance: what is left is f32 accumulation
// over K ≤ 2048 products, well under 1e-5 in relative norm.

const X_ROWS = [1, 3, 8, 33, 65, 130]; // GEMV (decode) up to 8, tiled GEMM above; partial tiles on purpose; 65 and 130: whole tiles by GEMM, the last rows by GEMV
const SCALE_DTYPES: oracle.ScaleDtype[] = ["f16", "bf16", "f32"];

interface PlainWeight {
  tensor: ReturnType<Backend["upload"]>;
  exact: Float64Array;
}

function uploadPlain(backend: Backend, rng: Random, rows: number, cols: number, dtype: oracle.ScaleDtype): PlainWeight {
  const { stored, exact } = oracle.encode(rng.normals(rows * cols, 0.5), dtype);
  return { tensor: backend.upload(stored, [rows, cols], dtype, "weights"), exact };
}

interface QuantizedWeight {
  matrix: QuantizedMatrix;
  exact: Float64Array;
}

function uploadQuantized(
  backend: Backend,
  rng: Random,
  rows: number,
  cols: number,
  bits: 4 | 8,
  groupSize: 32 | 64 | 128,
  scaleDtype: oracle.ScaleDtype,
): QuantizedWeight {
  const host = oracle.quantize(rng.normals(rows * cols, 0.5), rows, cols, bits, groupSize, scaleDtype);
  const matrix = uploadQuantizedMatrix(backend, host, rows, cols, bits, groupSize, scaleDtype);
  return { matrix, exact: host.dequantized };
}

function freeQuantized(backend: Backend, { matrix }: QuantizedWeight): void {
  for (const tensor of [matrix.weight, matrix.scales, matrix.biases]) backend.free(tensor);
}

/** Multiply on the backend after poisoning its pool, and compare with the float64 product. */
async function checkMatmul(
  backend: Backend,
  op: string,
  x: Float32Array,
  m: number,
  weight: QuantizedMatrix | PlainWeight["tensor"],
  exact: Float64Array,
  n: number,
  k: number,
): Promise<void> {
  const tx = backend.upload(x, [m, k], "f32");
  poison(backend, m * n);
  const out = backend.matmul(tx, weight);
  checkClose(op, [m, n, k], await backend.read(out), oracle.matmul(x, exact, m, n, k), TOLERANCE.f32);
  backend.free(out);
  backend.free(tx);
}

for (const backendName of backendsUnderTest()) {
  describe(`${backendName}: matmul against float64`, () => {
    for (const bits of [4, 8] as const) {
      it(`quantized ${bits}-bit, every group size and scale dtype, decode and prefill rows`, async () => {
        const backend = await backendFor(backendName);
        let variant = 0;
        for (const groupSize of [32, 64, 128] as const) {
          for (const scaleDtype of SCALE_DTYPES) {
            const rng = random(`matmul q${bits} g${groupSize} ${scaleDtype}`);
            const [n, k] = [variant % 2 === 0 ? 77 : 129, 3 * groupSize];
            const weight = uploadQuantized(backend, rng, n, k, bits, groupSize, scaleDtype);
            // Each variant gets a decode GEMV (M = 1) and a GEMM; M = 3 and 8 are covered below, as on
            // lavapipe a GEMV serving several rows of x takes up to seconds to compile per variant.
            for (const m of [1, variant % 2 === 0 ? 33 : 130]) {
              const op = `matmul_quantized q${bits} g${groupSize} ${scaleDtype}-scales`;
              await checkMatmul(backend, op, rng.normals(m * k), m, weight.matrix, weight.exact, n, k);
            }
            freeQuantized(backend, weight);
            variant++;
          }
        }
      });
    }

    it("quantized, every row count of x, 4-bit g64 bf16 and 8-bit g128 f16", async () => {
      const backend = await backendFor(backendName);
      for (const [bits, groupSize, scaleDtype, n, k] of [
        [4, 64, "bf16", 129, 192],
        [8, 128, "f16", 77, 384],
      ] as const) {
        const rng = random(`matmul rows q${bits} g${groupSize}`);
        const weight = uploadQuantized(backend, rng, n, k, bits, groupSize, scaleDtype);
        for (const m of X_ROWS) {
          const op = `matmul_quantized q${bits} g${groupSize} ${scaleDtype}-scales`;
          await checkMatmul(backend, op, rng.normals(m * k), m, weight.matrix, weight.exact, n, k);
        }
        freeQuantized(backend, weight);
      }
    });

    it("quantized with activations of large mean (s·Σq·x and b·Σx nearly cancel), K = 2048", async () => {
      const backend = await backendFor(backendName);
      const rng = random("matmul offset activations");
      const [n, k] = [96, 2048];
      const weight = uploadQuantized(backend, rng, n, k, 4, 64, "bf16");
      for (const m of [1, 33]) {
        const x = Float32Array.from(rng.normals(m * k, 0.3), (value) => value + 2);
        await checkMatmul(backend, "matmul_quantized offset-x", x, m, weight.matrix, weight.exact, n, k);
      }
      freeQuantized(backend, weight);
    });

    for (const dtype of ["f32", "f16", "bf16"] as const) {
      it(`plain ${dtype} weights, every row count of x; K = 192 (16-byte rows) and K = 103 (ragged rows)`, async () => {
        const backend = await backendFor(backendName);
        const rng = random(`matmul plain ${dtype}`);
        for (const [n, k] of [
          [77, 192],
          [129, 103],
        ] as const) {
          const weight = uploadPlain(backend, rng, n, k, dtype);
          for (const m of X_ROWS) {
            await checkMatmul(backend, `matmul ${dtype}`, rng.normals(m * k), m, weight.tensor, weight.exact, n, k);
          }
          backend.free(weight.tensor);
        }
      });
    }

    it("refuses operands that do not fit, naming both shapes", async () => {
      const backend = await backendFor(backendName);
      const x = backend.upload(new Float32Array(3 * 100), [3, 100], "f32");
      const w = backend.upload(new Float32Array(77 * 192), [77, 192], "f32", "weights");
      expect(() => backend.matmul(x, w)).toThrow(/\[3, 100\].*\[77, 192\]|\[77, 192\].*\[3, 100\]/);
      backend.free(x);
      backend.free(w);
    });
  });

  if (backendName !== "webgpu") continue;

  describe("webgpu: matmul over matrices split across bindings and grids", () => {
    afterEach(() => {
      overrideBindingLimit(null);
      setGemvTuning(null);
      setGemmSplits(null);
    });

    it("splits a GEMM over k into partial sums (uneven last split, row chunks too), plain and quantized", async () => {
      const backend = (await backendFor(backendName)) as WebGpuBackend;
      const rng = random("matmul split over k");
      // K = 256 in 3 splits: 96 + 96 + 64 (k per split rounds up to the kernel's steps of 32).
      const [n, k] = [300, 256];
      const quantized = uploadQuantized(backend, rng, n, k, 4, 64, "bf16");
      const plain = uploadPlain(backend, rng, n, k, "f16");
      const ragged = uploadPlain(backend, rng, n, 103, "f32");
      for (const chunked of [false, true]) {
        overrideBindingLimit(chunked ? 16384 : null);
        for (const [label, weight, exact, cols] of [
          ["matmul_quantized q4 g64 bf16", quantized.matrix, quantized.exact, k],
          ["matmul f16", plain.tensor, plain.exact, k],
          // Rows of 412 bytes cannot be chunked at 256-byte offsets: this one only unchunked.
          ...(chunked ? [] : ([["matmul f32 K=103", ragged.tensor, ragged.exact, 103]] as const)),
        ] as const) {
          // x must fit the lowered limit too: 12 rows of 256 floats do, 130 do not.
          for (const m of chunked ? [9, 12] : [9, 130]) {
            setGemmSplits(3);
            const out = backend.upload(new Float32Array(m * n), [m, n], "f32");
            const x = backend.upload(new Float32Array(m * cols), [m, cols], "f32");
            const plan = planMatmul(backend.runtime, x as GpuTensor, weight, out as GpuTensor);
            const reduces = plan.filter((dispatch) => dispatch.file === "matmul_reduce_splits.wgsl");
            const gemms = plan.filter((dispatch) => dispatch.entryPoint === "gemm");
            expect(reduces.length, `${label} M=${m}: one reduce per GEMM`).toBe(gemms.length);
            expect(gemms.every((dispatch) => dispatch.workgroups[2] === (cols === k ? 3 : 2))).toBe(true);
            backend.free(out);
            backend.free(x);
            const shape = `${label} M=${m}${chunked ? " row chunks" : ""}`;
            await checkMatmul(backend, `${shape} split`, rng.normals(m * cols), m, weight, exact, n, cols);
          }
        }
      }
      freeQuantized(backend, quantized);
      backend.free(plain.tensor);
      backend.free(ragged.tensor);
    });

    it("splits weights larger than one binding into row chunks (lowered limit), plain and quantized", async () => {
      const backend = (await backendFor(backendName)) as WebGpuBackend;
      const rng = random("matmul chunked");
      const [n, k] = [300, 256];
      overrideBindingLimit(16384);
      const quantized = uploadQuantized(backend, rng, n, k, 4, 64, "f16");
      const plain = uploadPlain(backend, rng, n, k, "bf16");
      for (const [label, weight, exact] of [
        ["matmul_quantized chunked q4 g64 f16-scales", quantized.matrix, quantized.exact],
        ["matmul chunked bf16", plain.tensor, plain.exact],
      ] as const) {
        for (const m of [1, 2, 12]) {
          const out = backend.upload(new Float32Array(m * n), [m, n], "f32");
          const x = backend.upload(new Float32Array(m * k), [m, k], "f32");
          const dispatches = planMatmul(backend.runtime, x as GpuTensor, weight, out as GpuTensor).length;
          expect(dispatches, `${label} M=${m} should need several chunks`).toBeGreaterThan(1);
          backend.free(out);
          backend.free(x);
          await checkMatmul(backend, label, rng.normals(m * k), m, weight, exact, n, k);
        }
      }
      freeQuantized(backend, quantized);
      backend.free(plain.tensor);
    });

    it("covers a GEMV whose row blocks need a second grid dimension (over 65,535 workgroups)", async () => {
      const backend = await backendFor(backendName);
      const rng = random("matmul 2-D grid");
      setGemvTuning({ threadsPerRow: 8, workgroupSize: 8 }); // 4 rows per workgroup
      const [n, k] = [65_535 * 4 + 77, 32];
      const quantized = uploadQuantized(backend, rng, n, k, 4, 32, "f16");
      await checkMatmul(
        backend,
        "matmul_quantized 2-D grid",
        rng.normals(k),
        1,
        quantized.matrix,
        quantized.exact,
        n,
        k,
      );
      freeQuantized(backend, quantized);
      const plainK = 8; // one 16-byte chunk of f16 per row
      const plain = uploadPlain(backend, rng, n, plainK, "f16");
      await checkMatmul(backend, "matmul 2-D grid f16", rng.normals(plainK), 1, plain.tensor, plain.exact, n, plainK);
      backend.free(plain.tensor);
    });

    it("gives the same answer for every GEMV workgroup shape, with and without subgroup-only sums", async () => {
      const backend = await backendFor(backendName);
      const rng = random("matmul tunings");
      const [n, k] = [77, 384];
      const quantized = uploadQuantized(backend, rng, n, k, 8, 32, "bf16");
      const plain = uploadPlain(backend, rng, n, k, "f32");
      // Lavapipe's subgroups have 8 lanes: up to 8 threads per row sum with shuffles alone, more go
      // through workgroup memory as well. Two rows of x at one shape check the sums of several rows.
      for (const [threadsPerRow, workgroupSize, m] of [
        [1, 32, 1],
        [8, 64, 1],
        [64, 64, 2],
        [256, 256, 1],
      ] as const) {
        setGemvTuning({ threadsPerRow, workgroupSize });
        const shape = `threads/row ${threadsPerRow} workgroup ${workgroupSize}`;
        const x = rng.normals(m * k);
        await checkMatmul(backend, `matmul_quantized ${shape}`, x, m, quantized.matrix, quantized.exact, n, k);
        await checkMatmul(backend, `matmul f32 ${shape}`, x, m, plain.tensor, plain.exact, n, k);
      }
      freeQuantized(backend, quantized);
      backend.free(plain.tensor);
    });
  });
}
