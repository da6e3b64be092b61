/**
 * The generation engine under concurrency, each figure against its own baseline from the same run:
 *   1. aggregate decode tokens/s with 1, 2, 4 and 8 sequences decoding together (baseline: 1);
 *   2. time to first token of a request arriving while 7 others decode (baseline: the same request
 *      alone);
 *   3. tokens/s of one long generation while a 4K-token prompt is prefilled next to it (baseline: the
 *      same generation before the prompt arrives).
 * Requests ignore end-of-turn tokens (random weights), so every sequence decodes exactly its budget.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist
 *   node dist/bench/engine.js [--model DIR | --preset tiny|1b] [--backend webgpu|mlx] [--quick] [--name=NAME]
 *     [--timestamps] [--no-batch-warm-up]
 * Without --model, a llama model of the preset (default 1b, 4-bit) is generated into bench/.models/.
 * --quick: short prompts and budgets (for CPU backends). Writes bench/results/engine-<device>.json.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createBackend, type BackendName } from "../backends/registry.js";
import { Engine } from "../src/engine/engine.js";
import type { GenerationEvent, GenerationRequest } from "../src/engine/events.js";
import { samplingParams } from "../src/engine/sampling.js";
import { loadModel } from "../src/model/load.js";
import { generateTestModel } from "../src/model/test-model/generate.js";
import type { TestModelPreset } from "../src/model/test-model/presets.js";
import { loadTokenizer } from "../src/model/tokenizer.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const argument = (name: string) => {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : process.argv.find((arg) => arg.startsWith(`--${name}=`))?.split("=")[1];
};
const quick = process.argv.includes("--quick");
const backendName = (argument("backend") ?? "webgpu") as BackendName;
const preset = argument("preset") ?? "1b";

const PROMPT = quick ? 64 : 512;
const DECODE = quick ? 16 : 128;
const CONCURRENCY = [1, 2, 4, 8];
const LONG_PROMPT = quick ? 512 : 4096;

async function modelDirectory(): Promise<string> {
  const given = argument("model");
  if (given) return given;
  const directory = join(root, "bench/.models", `llama-${preset}-4bit`);
  if (!existsSync(join(directory, "config.json"))) {
    mkdirSync(dirname(directory), { recursive: true });
    await generateTestModel({
      arch: "llama",
      out: directory,
      preset: preset as TestModelPreset,
      quantization: { bits: 4, groupSize: 64 },
      progressStream: process.stderr,
    });
  }
  return directory;
}

interface Finished {
  done: Extract<GenerationEvent, { type: "done" }>;
  /** performance.now() of every event that carried tokens. */
  tokenTimes: number[];
  submittedAt: number;
}

async function drain(events: AsyncIterable<GenerationEvent>, onFirstToken?: () => void): Promise<Finished> {
  const submittedAt = performance.now();
  const tokenTimes: number[] = [];
  for await (const event of events) {
    if (event.type === "delta") {
      if (tokenTimes.length === 0 && event.tokenIds.length > 0) onFirstToken?.();
      for (let i = 0; i < event.tokenIds.length; i++) tokenTimes.push(performance.now());
    } else if (event.type === "done") return { done: event, tokenTimes, submittedAt };
  }
  throw new Error("stream ended without done");
}

async function main(): Promise<void> {
  const directory = await modelDirectory();
  const backend = await createBackend(backendName);
  const { model, config } = await loadModel(directory, backend);
  const tokenizer = await loadTokenizer(directory);
  const engine = new Engine(backend, model, tokenizer, {
    maxBatchSize: 8,
    prefillStepSize: 512,
    maxContextLength: 0,
    kvBudgetBytes: (quick ? 256 : 2048) * 2 ** 20,
    kvStorage: { kind: "float", dtype: "f16" },
  });
  const vocab = config.vocabSize;
  let seed = 1;
  const promptOf = (length: number) => Array.from({ length }, () => (seed = (seed * 48271) % 2147483647) % (vocab - 1));
  const request = (promptLength: number, maxTokens: number): GenerationRequest => ({
    promptTokens: promptOf(promptLength),
    maxTokens,
    sampling: samplingParams({ temperature: 0 }),
    ignoreEos: true,
  });
  const device = argument("name") ?? backend.deviceDescription.replace(/[^\w.-]+/g, "-").slice(0, 40);
  process.stdout.write(`engine benchmark: ${backendName} on ${backend.deviceDescription}; ${directory}\n`);

  // --timestamps: a line per phase with the wall time, to line up with a trace of the GPU's clocks
  // (nvidia-smi --query-gpu=timestamp,clocks.sm --format=csv -lms 50).
  const mark = (phase: string) => {
    if (process.argv.includes("--timestamps")) process.stdout.write(`  [${new Date().toISOString()}] ${phase}\n`);
  };
  // Warm up: compile the kernels of a prompt and of one sequence decoding.
  mark("warm-up");
  await drain(engine.generate(request(PROMPT, 4)));
  // Then eight sequences decoding for a second or so: the first step of each batch shape compiles
  // kernels, and without this the rows for 2, 4 and 8 sequences each held one step of 300–380 ms
  // (two runs, bench/results/engine-h200-plain.json), which the aggregate rate counts in full. It
  // also leaves the GPU at full clocks, which an idle GPU is not (RESULTS, "The GPU's clocks").
  // (--no-batch-warm-up leaves it out, to see its effect.)
  if (!process.argv.includes("--no-batch-warm-up")) {
    mark("batch warm-up");
    await Promise.all(Array.from({ length: 8 }, () => drain(engine.generate(request(PROMPT, DECODE)))));
  }

  // 1. Aggregate decode throughput. Decode rate counts tokens after each sequence's first, over the
  // window in which every sequence was decoding (from the last first token to the first finish).
  const throughput: {
    sequences: number;
    tokensPerSecond: number;
    speedup: number;
    /** The gaps between a sequence's tokens in the window: their median, largest, and how many were > 3× the median. */
    medianStepMs: number;
    maxStepMs: number;
    stalls: number;
  }[] = [];
  for (const sequences of CONCURRENCY) {
    mark(`${sequences} decoding`);
    const results = await Promise.all(
      Array.from({ length: sequences }, () => drain(engine.generate(request(PROMPT, DECODE)))),
    );
    const windowStart = Math.max(...results.map((result) => result.tokenTimes[0]!));
    const windowEnd = Math.min(...results.map((result) => result.tokenTimes.at(-1)!));
    const tokens = results.reduce(
      (sum, result) => sum + result.tokenTimes.filter((time) => time > windowStart && time <= windowEnd).length,
      0,
    );
    const tokensPerSecond = tokens / ((windowEnd - windowStart) / 1000);
    // The aggregate rate takes every pause (a garbage collection, a compile) at full weight: the step
    // gaps show whether a row was slow throughout or held up a few times.
    const gaps = results
      .flatMap((result) => {
        const times = result.tokenTimes.filter((time) => time >= windowStart && time <= windowEnd);
        return times.slice(1).map((time, i) => time - times[i]!);
      })
      .filter((gap) => gap > 0.05) // tokens of one step arrive together
      .sort((a, b) => a - b);
    const medianStepMs = gaps[gaps.length >> 1] ?? 0;
    throughput.push({
      sequences,
      tokensPerSecond,
      speedup: tokensPerSecond / (throughput[0]?.tokensPerSecond ?? tokensPerSecond),
      medianStepMs,
      maxStepMs: gaps.at(-1) ?? 0,
      stalls: gaps.filter((gap) => gap > 3 * medianStepMs).length,
    });
  }

  // 2. Time to first token: alone, then arriving while 7 others decode.
  mark("time to first token");
  const solo = await drain(engine.generate(request(PROMPT, 1)));
  // The newcomer arrives once all seven are past their prompts and decoding.
  const decoding: Promise<void>[] = [];
  const busy = Array.from({ length: 7 }, () => {
    let started!: () => void;
    decoding.push(new Promise<void>((resolve) => (started = resolve)));
    return drain(engine.generate(request(PROMPT, DECODE * 4)), started);
  });
  await Promise.all(decoding);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const newcomer = await drain(engine.generate(request(PROMPT, 1)));
  await Promise.all(busy);
  const ttft = {
    soloMs: solo.done.timings.timeToFirstTokenMs,
    withSevenDecodingMs: newcomer.done.timings.timeToFirstTokenMs,
    ratio: newcomer.done.timings.timeToFirstTokenMs / solo.done.timings.timeToFirstTokenMs,
  };

  // 3. One long generation, before and while a long prompt is prefilled beside it.
  mark("long generation");
  let longStarted!: () => void;
  const longDecoding = new Promise<void>((resolve) => (longStarted = resolve));
  const longRun = drain(engine.generate(request(PROMPT, DECODE * 6)), longStarted);
  await longDecoding;
  await new Promise((resolve) => setTimeout(resolve, quick ? 300 : 1000));
  const prefillStart = performance.now();
  const prefill = await drain(engine.generate(request(LONG_PROMPT, 1)));
  const prefillEnd = prefillStart + prefill.done.timings.timeToFirstTokenMs;
  const { tokenTimes } = await longRun;
  const rate = (from: number, to: number) =>
    tokenTimes.filter((time) => time > from && time <= to).length / ((to - from) / 1000);
  const before = rate(tokenTimes[0]!, prefillStart);
  const during = rate(prefillStart, prefillEnd);
  const longPrefill = {
    beforeTokensPerSecond: before,
    duringTokensPerSecond: during,
    ratio: during / before,
    prefillMs: prefillEnd - prefillStart,
  };

  await engine.dispose();
  model.dispose();
  backend.dispose();

  const line = (cells: (string | number)[]) => process.stdout.write(`${cells.map(String).join(" | ")}\n`);
  line(["sequences", "decode tok/s", "× batch 1", "median step ms", "longest step ms", "steps > 3× median"]);
  for (const row of throughput) {
    line([
      row.sequences,
      row.tokensPerSecond.toFixed(1),
      row.speedup.toFixed(2),
      row.medianStepMs.toFixed(2),
      row.maxStepMs.toFixed(1),
      row.stalls,
    ]);
  }
  line(["TTFT alone ms", "TTFT with 7 decoding ms", "ratio"]);
  line([ttft.soloMs.toFixed(1), ttft.withSevenDecodingMs.toFixed(1), ttft.ratio.toFixed(2)]);
  line(["long gen tok/s before", `during ${LONG_PROMPT}-token prefill`, "ratio", "prefill ms"]);
  line([before.toFixed(1), during.toFixed(1), longPrefill.ratio.toFixed(2), longPrefill.prefillMs.toFixed(0)]);

  const out = join(root, "bench/results", `engine-${device}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    JSON.stringify(
      {
        backend: backendName,
        device: backend.deviceDescription,
        model: directory,
        quick,
        prompt: PROMPT,
        decode: DECODE,
        throughput,
        ttft,
        longPrefill,
        at: new Date().toISOString(),
      },
      null,
      2,
    ),
  );
  process.stdout.write(`wrote ${out}\n`);
}

await main();
