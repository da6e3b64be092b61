/**
 * How busy the `webgpu` package keeps the event loop while the host waits for the GPU, and what the
 * garbage collector pauses for. Dawn's node bindings re-queue a tick with `setImmediate` on every
 * turn of the event loop while any of their promises is pending (mapAsync, onSubmittedWorkDone),
 * creating a new native function each time; they look `setImmediate` up on the global object on
 * every call, which is how this program counts them. GC pauses come from Node's "gc" performance
 * entries. Baseline in the same run: the same requests' wall time (calls per second of waiting).
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist
 *   node dist/bench/dawn-polling.js [--preset tiny|1b|8b] [--prompt N] [--requests N]
 */
import { PerformanceObserver } from "node:perf_hooks";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { option } from "./lib/options.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const preset = (option("preset") ?? "tiny") as "tiny" | "1b" | "8b";
const promptTokens = Number(option("prompt") ?? 1024);
const requests = Number(option("requests") ?? 4);

// Counted before the backend loads: the bindings fetch the global on every tick.
let immediates = 0;
const setImmediateBefore = globalThis.setImmediate;
const counting = (callback: (...args: unknown[]) => void, ...args: unknown[]) => {
  immediates++;
  return setImmediateBefore(callback, ...args);
};
globalThis.setImmediate = Object.assign(counting, setImmediateBefore);

const { createBackend } = await import("../backends/registry.js");
const { Engine } = await import("../src/engine/engine.js");
const { samplingParams } = await import("../src/engine/sampling.js");
const { loadModel } = await import("../src/model/load.js");
const { loadTokenizer } = await import("../src/model/tokenizer.js");
const { benchModel } = await import("./lib/bench-model.js");

const directory = await benchModel(root, preset);
const backend = await createBackend("webgpu");
const { model, config } = await loadModel(directory, backend, { progressStream: null });
const tokenizer = await loadTokenizer(directory);
const engine = new Engine(backend, model, tokenizer, {
  maxBatchSize: 4,
  prefillStepSize: 512,
  maxContextLength: 0,
  kvBudgetBytes: 256 * 2 ** 20,
  kvStorage: { kind: "float", dtype: "f16" },
});
const request = async (seed: number) => {
  const prompt = Array.from({ length: promptTokens }, (_, i) => 1 + ((i * 7919 + seed) % (config.vocabSize - 1)));
  const events = engine.generate({
    promptTokens: prompt,
    maxTokens: 16,
    sampling: samplingParams({ temperature: 0 }),
    ignoreEos: true,
  });
  for await (const event of events) void event;
};
await request(0); // compiles the kernels

const pauses: { kind: string; ms: number }[] = [];
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind;
    pauses.push({ kind: kind === 1 ? "scavenge" : kind === 4 ? "mark-compact" : `kind ${kind}`, ms: entry.duration });
  }
});
observer.observe({ entryTypes: ["gc"] });
immediates = 0;
const started = performance.now();
for (let i = 1; i <= requests; i++) await request(i);
const elapsed = performance.now() - started;
await new Promise((resolve) => setTimeout(resolve, 100)); // let the last gc entries arrive
observer.disconnect();

const longest = [...pauses].sort((a, b) => b.ms - a.ms).slice(0, 5);
const total = pauses.reduce((sum, pause) => sum + pause.ms, 0);
process.stdout.write(
  `dawn-polling: ${backend.deviceDescription}; ${preset}, ${requests} requests of ${promptTokens} prompt tokens and 16 new\n` +
    `  ${elapsed.toFixed(0)} ms, ${immediates} setImmediate calls (${((immediates / elapsed) * 1000).toFixed(0)} per second)\n` +
    `  ${pauses.length} GC pauses, ${total.toFixed(1)} ms in all (${((total / elapsed) * 100).toFixed(1)}% of the time); longest: ` +
    `${longest.map((pause) => `${pause.ms.toFixed(1)} ms ${pause.kind}`).join(", ")}\n`,
);
await engine.dispose();
model.dispose();
backend.dispose();
