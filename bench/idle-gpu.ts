/**
 * What a pause costs a turn. An idle NVIDIA GPU drops its SM clock to its floor within about a second
 * (345 of 1980 MHz on the H200), and one short forward leaves it there: so a turn's time depends on
 * whether the GPU was busy just before it. This program measures one agent's follow-up turns (64 new
 * tokens over a cached context) in five conditions, each against the first (the baseline, in the same
 * run):
 *   hot, back to back        the turn right after another turn (the GPU busy: full clocks);
 *   hot, after idle          the same after a pause of --idle-ms;
 *   warm, evict then ask     the agent evicted to disk (export, write, fsync), then asked at once, as
 *                            bench/agent-memory.ts measures "warm";
 *   warm, after idle         the same with a pause between the eviction and the turn;
 *   hot, right after warm    the turn after a warm one.
 * For each, the median over --rounds of: time to first token, the time before the forward (the memory
 * lookup, with the reload from disk in it) and the step itself. Run it beside
 * `nvidia-smi --query-gpu=timestamp,clocks.sm --format=csv -lms 50` to see the clock.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist
 *   node dist/bench/idle-gpu.js [--preset tiny|1b|8b] [--context N] [--idle-ms N] [--rounds N] [--kv-mb N] [--name=NAME]
 * Writes bench/results/idle-gpu-<name>.json.
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBackend } from "../backends/registry.js";
import { samplingParams } from "../src/engine/sampling.js";
import type { TestModelPreset } from "../src/model/test-model/presets.js";
import { benchModel } from "./lib/bench-model.js";
import { openMemoryEngine, prepareMemoryEngine } from "./lib/memory-engine.js";
import { option } from "./lib/options.js";

const root = join(import.meta.dirname, "../..");
const preset = (option("preset") ?? "1b") as TestModelPreset;
const context = Number(option("context") ?? 32768);
const idleMs = Number(option("idle-ms") ?? 3000);
const rounds = Number(option("rounds") ?? 3);
const NEW_TOKENS = 64;

const directory = await benchModel(root, preset);
const backend = await createBackend("webgpu");
const setup = await prepareMemoryEngine(directory, backend, Number(option("kv-mb") ?? 6144) * 2 ** 20);
const { model, config, cacheDirectory: cacheDir } = setup;
const { memory, engine } = openMemoryEngine(setup);
await memory.start();
process.stdout.write(`idle-gpu benchmark: ${backend.deviceDescription}; ${directory}, ${context} tokens of context\n`);

let seed = 11;
const randomTokens = (count: number) =>
  Array.from({ length: count }, () => 1 + ((seed = (seed * 48271) % 2147483647) % (config.vocabSize - 1)));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Turn {
  ms: number;
  beforeStepMs: number;
  stepMs: number;
}
let prompt: number[] = [];
let answer: number[] = [];
async function turn(agentId: string, tokens: number[]): Promise<Turn> {
  for await (const event of engine.generate({
    promptTokens: tokens,
    maxTokens: 1,
    sampling: samplingParams({ temperature: 0 }),
    ignoreEos: true,
    memory: { agentId, tenant: "bench" },
  })) {
    if (event.type === "delta") answer = [...event.tokenIds];
    else if (event.type === "done") {
      const { timeToFirstTokenMs: ms, queuedMs } = event.timings;
      return { ms, beforeStepMs: queuedMs, stepMs: ms - queuedMs };
    }
  }
  throw new Error("no done event");
}
/** The agent's next turn: its last answer and NEW_TOKENS new tokens appended. */
const followUp = () => {
  prompt = [...prompt, ...answer, ...randomTokens(NEW_TOKENS)];
  return turn("agent", prompt);
};

// Compile every shape (a first turn, a follow-up, a reload), then the agent's first turn.
const warmup = randomTokens(600);
await turn("warmup", warmup);
await turn("warmup", [...warmup, ...answer, ...randomTokens(NEW_TOKENS)]);
await memory.evictAgent("bench", "warmup");
await turn("warmup", [...warmup, ...answer, ...randomTokens(2 * NEW_TOKENS)]);
prompt = randomTokens(context);
await turn("agent", prompt);

const conditions: [string, () => Promise<Turn>][] = [
  ["hot, back to back", () => followUp()],
  ["hot, after idle", async () => (await sleep(idleMs), followUp())],
  ["warm, evict then ask", async () => (await memory.evictAgent("bench", "agent"), followUp())],
  ["hot, right after warm", () => followUp()],
  ["warm, after idle", async () => (await memory.evictAgent("bench", "agent"), await sleep(idleMs), followUp())],
];
const measured = new Map<string, Turn[]>(conditions.map(([name]) => [name, []]));
for (let round = 0; round < rounds; round++) {
  // Every round starts from full clocks: the hot turn right after the previous round's work.
  await followUp();
  for (const [name, run] of conditions) measured.get(name)!.push(await run());
}
await engine.dispose();
model.dispose();
rmSync(cacheDir, { recursive: true, force: true });

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1]!;
const rows = conditions.map(([name]) => {
  const turns = measured.get(name)!;
  return {
    condition: name,
    ms: median(turns.map((t) => t.ms)),
    beforeStepMs: median(turns.map((t) => t.beforeStepMs)),
    stepMs: median(turns.map((t) => t.stepMs)),
    turns,
  };
});
const baselineStep = rows[0]!.stepMs;
process.stdout.write(`| condition | TTFT ms | before the step ms | step ms | step / back-to-back step |\n`);
for (const row of rows) {
  process.stdout.write(
    `| ${row.condition} | ${row.ms.toFixed(1)} | ${row.beforeStepMs.toFixed(1)} | ${row.stepMs.toFixed(1)} | ${(row.stepMs / baselineStep).toFixed(2)} |\n`,
  );
}
const out = join(root, "bench/results", `idle-gpu-${option("name") ?? backend.name}.json`);
writeFileSync(
  out,
  `${JSON.stringify({ device: backend.deviceDescription, model: directory, context, idleMs, rounds, rows, at: new Date().toISOString() }, null, 2)}\n`,
);
process.stdout.write(`wrote ${out}\n`);
