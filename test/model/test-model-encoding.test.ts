/**
 * The pieces under make-test-model that its end-to-end test cannot single out: float narrowing
 * against MLX's own astype (the oracle), and the streaming safetensors writer against our one-shot
 * writer.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from "../../src/model/safetensors.js";
import { encodeFloats, roundToDtype } from "../../src/model/test-model/encode.js";
import { SafetensorsStreamWriter } from "../../src/model/test-model/safetensors-stream.js";
import { REPO_ROOT, scratchDir } from "../support/cli.js";

const run = promisify(execFile);
const ORACLE = join(REPO_ROOT, "test/support/python/mlx_lm_load_oracle.py");

function edgeCases(): Float32Array {
  const values = [
    0,
    -0,
    1,
    -1,
    1 + 2 ** -8,
    1 + 3 * 2 ** -8,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    65504,
    65519.99,
    65520,
    1e5,
    -1e5,
  ];
  // f16 subnormals and the ties at their edges: 2^-25 (rounds to 0), 3·2^-26, 2^-24, 1.5·2^-24, 2^-14 ± ulp.
  values.push(
    2 ** -25,
    3 * 2 ** -26,
    2 ** -24,
    1.5 * 2 ** -24,
    2.5 * 2 ** -24,
    2 ** -14,
    2 ** -14 * (1 - 2 ** -12),
    1e-7,
    -3e-6,
  );
  let state = 12345;
  for (let i = 0; i < 4000; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const magnitude = 10 ** ((state % 1400) / 100 - 8); // 1e-8 .. 1e6
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    values.push((state & 1 ? -1 : 1) * magnitude * (1 + state / 2 ** 32));
  }
  return Float32Array.from(values);
}

describe("float narrowing for test-model weights", () => {
  it("bf16 and f16 bits equal MLX's astype, ties to even, subnormals and overflow included", async () => {
    const dir = scratchDir();
    const values = edgeCases();
    await writeSafetensors(join(dir, "in.safetensors"), [
      { name: "w", dtype: "F32", shape: [values.length], data: new Uint8Array(values.buffer) },
    ]);
    await run("python3", [ORACLE, "cast", join(dir, "in.safetensors"), join(dir, "out.safetensors")]);
    const file = await SafetensorsFile.open(join(dir, "out.safetensors"));
    try {
      for (const dtype of ["bf16", "f16"] as const) {
        const mlx = new Uint16Array((await file.read(dtype)).slice().buffer);
        const ours = new Uint16Array(encodeFloats(values.slice(), dtype).slice().buffer);
        const differ = [...ours.keys()].filter((i) => ours[i] !== mlx[i]).map((i) => [values[i], ours[i], mlx[i]]);
        expect(differ, dtype).toEqual([]);
        // roundToDtype keeps float32 values that encode to the same bits, i.e. are exactly representable.
        const rounded = values.slice();
        roundToDtype(rounded, dtype);
        expect(Array.from(new Uint16Array(encodeFloats(rounded, dtype).slice().buffer))).toEqual(Array.from(mlx));
      }
    } finally {
      await file.close();
    }
  });
});

describe("SafetensorsStreamWriter", () => {
  const tensors: TensorToWrite[] = [
    { name: "a", dtype: "F32", shape: [3, 5], data: new Uint8Array(new Float32Array(15).map((_, i) => i / 3).buffer) },
    {
      name: "b.weight",
      dtype: "U32",
      shape: [7],
      data: new Uint8Array(new Uint32Array(7).map((_, i) => i * 999).buffer),
    },
    { name: "c", dtype: "BF16", shape: [2, 2], data: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) },
  ];

  it("writes the same bytes as writeSafetensors, whatever the order the pieces arrive in", async () => {
    const dir = scratchDir();
    await writeSafetensors(join(dir, "whole.safetensors"), tensors, { format: "mlx" });
    const writer = await SafetensorsStreamWriter.create(join(dir, "streamed.safetensors"), tensors, { format: "mlx" });
    const [a, b, c] = tensors.map((tensor) => tensor.data);
    await writer.append("b.weight", b!.subarray(0, 12));
    await writer.append("a", a!.subarray(0, 20));
    await writer.append("c", c!);
    await writer.append("a", a!.subarray(20));
    await writer.append("b.weight", b!.subarray(12));
    await writer.commit();
    expect(readFileSync(join(dir, "streamed.safetensors")).equals(readFileSync(join(dir, "whole.safetensors")))).toBe(
      true,
    );
    expect(readdirSync(dir).sort()).toEqual(["streamed.safetensors", "whole.safetensors"]);
  });

  it("refuses an incomplete or overlong tensor, naming file and tensor, and leaves no file behind", async () => {
    const dir = scratchDir();
    const path = join(dir, "model.safetensors");
    const writer = await SafetensorsStreamWriter.create(path, tensors);
    await writer.append("a", tensors[0]!.data);
    await expect(writer.append("c", new Uint8Array(9))).rejects.toThrow(
      `${path}: tensor "c": 9 bytes written, its header says 8`,
    );
    await expect(writer.append("d", new Uint8Array(1))).rejects.toThrow(`${path}: no tensor "d" in this file's header`);
    await expect(writer.commit()).rejects.toThrow(`${path}: tensor "b.weight": 0 of 28 bytes written`);
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});
