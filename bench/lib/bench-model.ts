/**
 * The generated models benchmarks run on, kept in bench/.models/ (ignored by git): made once by
 * make-test-model's generator, which writes the same bytes for the same options, so every benchmark
 * and every machine measures the same weights.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { generateTestModel } from "../../src/model/test-model/generate.js";
import { TEST_MODEL_ARCHS, type TestModelArch, type TestModelPreset } from "../../src/model/test-model/presets.js";

/** A benchmark's --arch option: llama when absent; one of the generator's architectures. */
export function benchArch(value: string | undefined): TestModelArch {
  const arch = value ?? "llama";
  if (!(TEST_MODEL_ARCHS as readonly string[]).includes(arch)) {
    throw new Error(`--arch ${arch}: one of ${TEST_MODEL_ARCHS.join(", ")}`);
  }
  return arch as TestModelArch;
}

/**
 * A model of `arch` (llama unless a benchmark is asked for another) in `preset`'s shape, 4-bit group 64
 * with bf16 scales, seed 0: generated on first use.
 */
export async function benchModel(
  root: string,
  preset: TestModelPreset,
  arch: TestModelArch = "llama",
): Promise<string> {
  const directory = join(root, "bench/.models", `${arch}-${preset}-4bit`);
  if (existsSync(join(directory, "config.json"))) return directory;
  // Written aside and renamed, so an interrupted generation never passes for a model.
  const partial = `${directory}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(dirname(directory), { recursive: true });
  await generateTestModel({
    arch,
    out: partial,
    preset,
    quantization: { bits: 4, groupSize: 64 },
    progressStream: process.stderr,
  });
  rmSync(directory, { recursive: true, force: true });
  renameSync(partial, directory);
  return directory;
}
