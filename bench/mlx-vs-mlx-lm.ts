/**
 * Our MLX backend against mlx-lm on the same model, the same machine and the same MLX library, in one
 * run: prefill and decode tokens/s of one greedy generation. The model is make-test-model's llama `1b`
 * preset (Llama-3.2-1B's shapes), 4-bit group 64 with bf16 scales, random weights, seed 0.
 *
 * Baseline (measured first, in a Python subprocess, bench/python/mlx_lm_generate.py): mlx-lm's own
 * generation loop (generate_step, which stream_generate and generate drive), twice — in the checkpoint's
 * dtype (bf16 activations, mlx-lm as users run it) and with every parameter cast to float32 (f32
 * activations, the precision our backend computes in). Ours: loadModel + LanguageModel.forward over a
 * PagedKv cache, argmax on the device (bench/lib/greedy-timing.ts). Both sides warm up on a short
 * prompt first, then run `--repeats` times (mlx-lm in bf16 once by default: minutes per run on a CPU);
 * the table shows medians.
 *
 * Timing, both sides as mlx-lm's stream_generate: prefill tok/s = prompt tokens / (start → first
 * generated token on the host); decode tok/s = (generated − 1) / (first generated token → last).
 *
 * Run from the repository root (needs the MLX addon built and `python3 -m pip install mlx-lm`):
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist && node dist/bench/mlx-vs-mlx-lm.js
 * Options: --quick (prompt 8, generate 4, one run: a smoke test, written to *-quick.json, which git
 * ignores); --prompt=N (default 32), --generate=N (default 16), --repeats=N (default 2); --kv=f32|f16|q8|q4 (our KV storage, default f32 as mlx-lm's
 * float32 cache); --prefill-chunk=N (default: the whole prompt in one forward; mlx-lm's step is 2048);
 * --model=DIR (default bench/.models/llama-1b-4bit, generated on first use); --python=PATH;
 * --name=NAME (default: the device MLX computes on, cpu or gpu).
 * Writes bench/results/mlx-vs-mlx-lm-<name>.json.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { KvStorage } from "../backends/contract.js";
import { createBackend } from "../backends/registry.js";
import { loadModel } from "../src/model/load.js";
import { benchModel } from "./lib/bench-model.js";
import { timeGreedy, type GreedyTiming } from "./lib/greedy-timing.js";
import { describeMachine } from "./lib/machine.js";
import { option } from "./lib/options.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const count = (name: string, fallback: number) => {
  const value = Number(option(name) ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
  return value;
};

const quick = process.argv.includes("--quick");
// MLX's CPU kernels are slow (in bf16 most of all: ~0.15 tok/s on two cores), so the defaults are short.
// At these lengths a token's cost is the quantized matmuls, not attention, and MLX's CPU quantized
// matmul costs the same per row whether a prefill or a decode asks: tok/s hardly moves with length.
const PROMPT = count("prompt", quick ? 8 : 32);
const GENERATE = count("generate", quick ? 4 : 16);
const REPEATS = count("repeats", quick ? 1 : 2);
/** mlx-lm in bf16 runs once unless --repeats says otherwise: on a CPU it takes minutes per run. */
const BF16_REPEATS = option("repeats") === undefined ? 1 : REPEATS;
const WARMUP_PROMPT = 4;
const KV_STORAGE: Record<string, KvStorage> = {
  f32: { kind: "float", dtype: "f32" },
  f16: { kind: "float", dtype: "f16" },
  q8: { kind: "quantized", bits: 8, groupSize: 64 },
  q4: { kind: "quantized", bits: 4, groupSize: 64 },
};
const kvName = option("kv") ?? "f32";
const kvStorage: KvStorage = (() => {
  const storage = KV_STORAGE[kvName];
  if (!storage) throw new Error(`--kv must be one of ${Object.keys(KV_STORAGE).join(", ")}`);
  return storage;
})();
const prefillChunk = option("prefill-chunk") === undefined ? undefined : count("prefill-chunk", 1);
const python = option("python") ?? "python3";
const MLX_LM_DTYPES = ["model", "float32"] as const;

interface PythonRun {
  prefill_seconds: number;
  decode_seconds: number;
  tokens: number[];
}
interface PythonResult {
  mlx: string;
  mlx_lm: string;
  device: string;
  runs: Record<(typeof MLX_LM_DTYPES)[number], PythonRun[]>;
}

interface Row {
  side: string;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  runs: GreedyTiming[];
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

function row(side: string, runs: GreedyTiming[]): Row {
  return {
    side,
    prefillTokensPerSecond: median(runs.map((run) => run.promptTokens / run.prefillSeconds)),
    decodeTokensPerSecond: median(runs.map((run) => (run.tokens.length - 1) / run.decodeSeconds)),
    runs,
  };
}

/** Deterministic prompt ids in [1, vocab) (Park–Miller), the same for both sides. */
function promptOf(length: number, vocab: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length }, () => {
    state = (state * 48271) % 2147483647;
    return (state % (vocab - 1)) + 1;
  });
}

async function runMlxLm(model: string, prompt: number[], warmup: number[]): Promise<PythonResult> {
  const scratch = mkdtempSync(join(tmpdir(), "agent-memory-bench-"));
  try {
    const request = join(scratch, "request.json");
    const result = join(scratch, "result.json");
    writeFileSync(
      request,
      JSON.stringify({
        path: model,
        prompt,
        generate: GENERATE,
        warmup,
        repeats: { model: BF16_REPEATS, float32: REPEATS },
      }),
    );
    const script = join(root, "bench/python/mlx_lm_generate.py");
    const child = promisify(execFile)(python, [script, request, result], { maxBuffer: 16 * 2 ** 20 });
    child.child.stderr?.pipe(process.stderr);
    await child;
    return JSON.parse(readFileSync(result, "utf8")) as PythonResult;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** How many leading tokens two generations share. */
const agreeing = (a: readonly number[], b: readonly number[]) => {
  const first = a.findIndex((token, index) => token !== b[index]);
  return first < 0 ? Math.min(a.length, b.length) : first;
};

function printTable(rows: Row[], ours: Row): void {
  const header = ["side", "prefill tok/s", "decode tok/s", "ours ÷ this, prefill", "ours ÷ this, decode"];
  const cells = rows.map((r) => [
    r.side,
    r.prefillTokensPerSecond.toFixed(2),
    r.decodeTokensPerSecond.toFixed(2),
    r === ours ? "—" : `${(ours.prefillTokensPerSecond / r.prefillTokensPerSecond).toFixed(2)}×`,
    r === ours ? "—" : `${(ours.decodeTokensPerSecond / r.decodeTokensPerSecond).toFixed(2)}×`,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((line) => line[column]!.length)));
  const line = (values: string[]) => `| ${values.map((value, i) => value.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(header));
  console.log(line(widths.map((width) => "-".repeat(width))));
  for (const values of cells) console.log(line(values));
}

async function main(): Promise<void> {
  const model = option("model") ?? (await benchModel(root, "1b"));
  const config = JSON.parse(readFileSync(join(model, "config.json"), "utf8")) as { vocab_size: number };
  const prompt = promptOf(PROMPT, config.vocab_size, 7);
  const warmup = promptOf(WARMUP_PROMPT, config.vocab_size, 11);
  const machine = describeMachine();
  console.log(
    `mlx vs mlx-lm: ${model}; prompt ${PROMPT}, generate ${GENERATE}, ${REPEATS} run(s) per side ` +
      `(${BF16_REPEATS} of mlx-lm in bf16)`,
  );
  console.log(`machine: ${machine.cpu}, ${machine.cores} logical CPUs, ${machine.memoryGiB} GiB`);

  // The baseline first, alone on the machine (our backend is not created until it is done).
  const baseline = await runMlxLm(model, prompt, warmup);
  const baselineRows = MLX_LM_DTYPES.map((dtype) =>
    row(
      dtype === "model" ? "mlx-lm, bf16 (as shipped)" : "mlx-lm, float32",
      baseline.runs[dtype].map((run) => ({
        promptTokens: PROMPT,
        prefillSeconds: run.prefill_seconds,
        decodeSeconds: run.decode_seconds,
        tokens: run.tokens,
      })),
    ),
  );

  const backend = await createBackend("mlx");
  const loaded = await loadModel(model, backend, { progressStream: null });
  const timing = { storage: kvStorage, ...(prefillChunk ? { prefillChunk } : {}) };
  await timeGreedy(backend, loaded.model, warmup, 2, timing);
  const ourRuns: GreedyTiming[] = [];
  for (let i = 0; i < REPEATS; i++) ourRuns.push(await timeGreedy(backend, loaded.model, prompt, GENERATE, timing));
  const ours = row(`ours (MLX addon, f32 activations, ${kvName} KV)`, ourRuns);
  const memory = backend.memory();
  loaded.model.dispose();
  backend.dispose();

  const rows = [ours, ...baselineRows];
  console.log(`\n${backend.deviceDescription}; mlx-lm ${baseline.mlx_lm} on MLX ${baseline.mlx} (${baseline.device})`);
  printTable(rows, ours);
  const sameAsFloat32 = agreeing(ours.runs[0]!.tokens, baselineRows[1]!.runs[0]!.tokens);
  console.log(`greedy tokens identical to mlx-lm float32's: the first ${sameAsFloat32} of ${GENERATE}`);

  const name = option("name") ?? (backend.deviceDescription.includes("on GPU") ? "gpu" : "cpu");
  const file = join(root, "bench/results", `mlx-vs-mlx-lm-${name}${quick ? "-quick" : ""}.json`);
  mkdirSync(dirname(file), { recursive: true });
  const report = {
    date: new Date().toISOString(),
    machine,
    device: backend.deviceDescription,
    mlx: baseline.mlx,
    mlxLm: baseline.mlx_lm,
    model,
    settings: {
      quick,
      prompt: PROMPT,
      generate: GENERATE,
      repeats: REPEATS,
      bf16Repeats: BF16_REPEATS,
      kv: kvName,
      prefillChunk: prefillChunk ?? PROMPT,
    },
    rows,
    ratios: Object.fromEntries(
      baselineRows.map((baselineRow) => [
        baselineRow.side,
        {
          prefill: ours.prefillTokensPerSecond / baselineRow.prefillTokensPerSecond,
          decode: ours.decodeTokensPerSecond / baselineRow.decodeTokensPerSecond,
        },
      ]),
    ),
    greedyTokensIdenticalToFloat32: sameAsFloat32,
    ourPeakBytes: memory.peakBytes,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${file}`);
}

await main();
