/**
 * Generates a benchmark model ahead of the benchmark (bench/.models/<arch>-<preset>-4bit), so that a
 * large one can be made in a command of its own:
 *   node dist/bench/lib/make-bench-model.js --preset 8b [--arch gemma3_text]
 */
import { join } from "node:path";
import type { TestModelPreset } from "../../src/model/test-model/presets.js";
import { benchArch, benchModel } from "./bench-model.js";

const index = process.argv.indexOf("--preset");
const preset = (index >= 0 ? process.argv[index + 1] : "1b") as TestModelPreset;
const archIndex = process.argv.indexOf("--arch");
const arch = benchArch(archIndex >= 0 ? process.argv[archIndex + 1] : undefined);
const started = performance.now();
const directory = await benchModel(join(import.meta.dirname, "../../.."), preset, arch);
process.stdout.write(`${directory} ready in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
