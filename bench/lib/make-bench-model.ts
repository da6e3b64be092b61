/**
 * Generates a benchmark model ahead of the benchmark (bench/.models/llama-<preset>-4bit), so that a
 * large one can be made in a command of its own:
 *   node dist/bench/lib/make-bench-model.js --preset 8b
 */
import { join } from "node:path";
import type { TestModelPreset } from "../../src/model/test-model/presets.js";
import { llamaBenchModel } from "./bench-model.js";

const index = process.argv.indexOf("--preset");
const preset = (index >= 0 ? process.argv[index + 1] : "1b") as TestModelPreset;
const started = performance.now();
const directory = await llamaBenchModel(join(import.meta.dirname, "../../.."), preset);
process.stdout.write(`${directory} ready in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
