import { afterEach, describe, expect, it } from "vitest";
import type { Backend, Matrix } from "../backends/contract.js";
import type { WebGpuBackend } from "../backends/webgpu/backend.js";
import { overrideBindingLimit, planEmbedding } from "../backends/webgpu/ops/matmul.js";
import type { GpuTensor } from "../backends/webgpu/runtime.js";
import * as oracle from "./oracle/matmul.js";
import { backendFor, backendsUnderTest, poison } from "./support/backends.js";
import { TOLERANCE, checkClose } from "./support/compare.js";
import { uploadQuantizedMatrix } from "./support/weights.js";
import { random, type Random } from "./support/random.js";

// A gather copies stored values, so the only error allowed is f32 rounding of s·q + b for quantized
// tables (the oracle uses the exact stored 16-bit and quantized values): the f32 tolerance holds for all.

/** Repeated and out-of-order ids, the first and the last row included. */
function idsFor(rng: Random, rows: number, count: number): Uint32Array {
  const ids = Uint32Array.from({ length: count }, () => rng.integer(rows));
  ids[0] = rows - 1;
  ids[1] = 0;
  ids[count - 1] = ids[2]!;
  return ids;
}

interface Table {
  matrix: Matrix;
  exact: Float64Array;
  tensors: ReturnType<Backend["upload"]>[];
}

function plainTable(backend: Backend, rng: Random, rows: number, cols: number, dtype: oracle.ScaleDtype): Table {
  const { stored, exact } = oracle.encode(rng.normals(rows * cols), dtype);
  const tensor = backend.upload(stored, [rows, cols], dtype, "weights");
  return { matrix: tensor, exact, tensors: [tensor] };
}

function quantizedTable(
  backend: Backend,
  rng: Random,
  rows: number,
  cols: number,
  bits: 4 | 8,
  groupSize: 32 | 64 | 128,
  scaleDtype: oracle.ScaleDtype,
): Table {
  const host = oracle.quantize(rng.normals(rows * cols), rows, cols, bits, groupSize, scaleDtype);
  const matrix = uploadQuantizedMatrix(backend, host, rows, cols, bits, groupSize, scaleDtype);
  return { matrix, exact: host.dequantized, tensors: [matrix.weight, matrix.scales, matrix.biases] };
}

async function checkGather(backend: Backend, op: string, table: Table, cols: number, ids: Uint32Array): Promise<void> {
  const tids = backend.upload(ids, [ids.length], "u32");
  poison(backend, ids.length * cols);
  const out = backend.embedding(table.matrix, tids);
  const expected = oracle.embedding(table.exact, cols, ids);
  checkClose(op, [ids.length, cols], await backend.read(out), expected, TOLERANCE.f32);
  backend.free(out);
  backend.free(tids);
}

for (const backendName of backendsUnderTest()) {
  describe(`${backendName}: embedding gather against float64`, () => {
    for (const dtype of ["f32", "f16", "bf16"] as const) {
      it(`plain ${dtype} table, odd row length, repeated and out-of-order ids`, async () => {
        const backend = await backendFor(backendName);
        const rng = random(`embedding ${dtype}`);
        const [rows, cols] = [301, 77];
        const table = plainTable(backend, rng, rows, cols, dtype);
        for (const count of [1, 9, 130])
          await checkGather(backend, `embedding ${dtype}`, table, cols, idsFor(rng, rows, count));
        table.tensors.forEach((tensor) => backend.free(tensor));
      });
    }

    for (const bits of [4, 8] as const) {
      it(`quantized ${bits}-bit table, every group size and scale dtype`, async () => {
        const backend = await backendFor(backendName);
        for (const groupSize of [32, 64, 128] as const) {
          for (const scaleDtype of ["f16", "bf16", "f32"] as const) {
            const rng = random(`embedding q${bits} g${groupSize} ${scaleDtype}`);
            const [rows, cols] = [157, 3 * groupSize];
            const table = quantizedTable(backend, rng, rows, cols, bits, groupSize, scaleDtype);
            const op = `embedding_quantized q${bits} g${groupSize} ${scaleDtype}-scales`;
            await checkGather(backend, op, table, cols, idsFor(rng, rows, 33));
            table.tensors.forEach((tensor) => backend.free(tensor));
          }
        }
      });
    }
  });

  if (backendName !== "webgpu") continue;

  describe("webgpu: embedding over tables split across bindings", () => {
    afterEach(() => overrideBindingLimit(null));

    it("gathers from tables larger than one binding in row chunks (lowered limit), plain and quantized", async () => {
      const backend = (await backendFor(backendName)) as WebGpuBackend;
      const rng = random("embedding chunked");
      const [rows, cols] = [1000, 128];
      overrideBindingLimit(16384);
      const tables: [string, Table][] = [
        ["embedding chunked bf16", plainTable(backend, rng, rows, cols, "bf16")],
        ["embedding_quantized chunked q4 g32 bf16-scales", quantizedTable(backend, rng, rows, cols, 4, 32, "bf16")],
        ["embedding_quantized chunked q8 g128 f32-scales", quantizedTable(backend, rng, rows, cols, 8, 128, "f32")],
      ];
      for (const [op, table] of tables) {
        const ids = idsFor(rng, rows, 20);
        const tids = backend.upload(ids, [ids.length], "u32");
        const out = backend.upload(new Float32Array(ids.length * cols), [ids.length, cols], "f32");
        const dispatches = planEmbedding(backend.runtime, table.matrix, tids as GpuTensor, out as GpuTensor).length;
        expect(dispatches, `${op} should need several chunks`).toBeGreaterThan(1);
        backend.free(tids);
        backend.free(out);
        await checkGather(backend, op, table, cols, ids);
        table.tensors.forEach((tensor) => backend.free(tensor));
      }
    });

    it("gives rows of zeros for ids past the end of the table, also when it is chunked", async () => {
      const backend = await backendFor(backendName);
      const rng = random("embedding missing ids");
      const [rows, cols] = [300, 64];
      for (const limit of [null, 8192]) {
        overrideBindingLimit(limit);
        const table = quantizedTable(backend, rng, rows, cols, 4, 64, "f16");
        const ids = Uint32Array.from([3, rows, 299, 0xffffffff, 3]);
        const tids = backend.upload(ids, [ids.length], "u32");
        poison(backend, ids.length * cols);
        const gathered = backend.embedding(table.matrix, tids);
        const out = await backend.read(gathered);
        const expected = new Float64Array(ids.length * cols);
        for (const [t, id] of ids.entries()) {
          if (id < rows) expected.set(table.exact.subarray(id * cols, (id + 1) * cols), t * cols);
        }
        checkClose(
          `embedding_quantized ids past the end, limit ${limit}`,
          [ids.length, cols],
          out,
          expected,
          TOLERANCE.f32,
        );
        backend.free(gathered);
        backend.free(tids);
        table.tensors.forEach((tensor) => backend.free(tensor));
      }
    });
  });
}
