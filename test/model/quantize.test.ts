/** Our MLX affine quantizer against MLX's own mx.quantize, bit for bit, through safetensors files. */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { quantizeAffine } from "../../src/model/quantize.js";
import { SafetensorsFile, writeSafetensors } from "../../src/model/safetensors.js";
import { random } from "../../conformance/support/random.js";
import { REPO_ROOT, scratchDir } from "../support/cli.js";

const run = promisify(execFile);
const ORACLE = join(REPO_ROOT, "test/support/python/mlx_quantize_oracle.py");

async function mlxQuantize(values: Float32Array, rows: number, cols: number, groupSize: number, bits: number) {
  const dir = scratchDir();
  const source = join(dir, "w.safetensors");
  const target = join(dir, "q.safetensors");
  await writeSafetensors(source, [
    { name: "w", dtype: "F32", shape: [rows, cols], data: new Uint8Array(values.buffer) },
  ]);
  await run("python3", [ORACLE, "quantize", source, target, String(groupSize), String(bits)]);
  const file = await SafetensorsFile.open(target);
  try {
    const read = async (name: string) => (await file.read(name)).slice().buffer;
    return {
      weight: new Uint32Array(await read("weight")),
      scales: new Float32Array(await read("scales")),
      biases: new Float32Array(await read("biases")),
    };
  } finally {
    await file.close();
  }
}

describe("quantizeAffine", () => {
  for (const bits of [4, 8] as const) {
    for (const groupSize of [32, 64, 128] as const) {
      it(`equals mx.quantize bit for bit: ${bits}-bit, group ${groupSize}`, async () => {
        const [rows, cols] = [13, groupSize * 3];
        const rng = random(`quantize ${bits} ${groupSize}`);
        const values = rng.normals(rows * cols, 0.02 + rng.next() * 2);
        values.fill(0, 0, groupSize); // an all-zero group
        values.fill(1.5, cols, cols + groupSize); // a constant group
        values[2 * cols + 5] = -7; // a group whose edge is its minimum
        const ours = quantizeAffine(values, rows, cols, groupSize, bits);
        const theirs = await mlxQuantize(values, rows, cols, groupSize, bits);
        expect(Array.from(ours.scales)).toEqual(Array.from(theirs.scales));
        expect(Array.from(ours.biases)).toEqual(Array.from(theirs.biases));
        expect(Array.from(ours.weight)).toEqual(Array.from(theirs.weight));
      });
    }
  }

  it("refuses shapes that do not split into groups", () => {
    expect(() => quantizeAffine(new Float32Array(96), 1, 96, 64, 4)).toThrow(
      "96 columns are not a multiple of the group size 64",
    );
  });
});
