/**
 * Where the time of one forward goes, for the hot follow-up of the agent-memory benchmark: NEW rows
 * (64) after a context of 0…32K tokens already in the cache. Per context length, medians of 5:
 *   record   host time to record the forward (model.forward returning: every dispatch encoded; the
 *            runtime submits every 64 dispatches, so the GPU is already working through the first ones);
 *   drain    from then until the GPU is idle (the last submit, the rest of the work, the callback);
 *   read     an argmax of the last row read back to the host (a copy, a map, the await);
 *   total    the three together, what a step of the engine pays before it can sample;
 *   unsplit  the total again with every GEMM left whole (no split over k): the baseline of split-K;
 *   engine   time to first token through Engine.generate for the same rows with no context (the
 *            agent-memory benchmark's new-only figure, with the scheduler and sampling around it).
 * Also the same forward with the GPU timed by timestamps over one compute pass (--timed), when the
 * adapter offers timestamp queries: how much of "drain" is GPU work.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist
 *   node dist/bench/forward-profile.js [--preset tiny|1b|8b] [--max-context N] [--name=NAME]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PagedKv } from "../backends/kv-paging.js";
import { WebGpuBackend } from "../backends/webgpu/backend.js";
import { setGemmSplits } from "../backends/webgpu/ops/matmul.js";
import { Engine } from "../src/engine/engine.js";
import { samplingParams } from "../src/engine/sampling.js";
import { loadModel } from "../src/model/load.js";
import type { TestModelPreset } from "../src/model/test-model/presets.js";
import { loadTokenizer } from "../src/model/tokenizer.js";
import { benchModel } from "./lib/bench-model.js";
import { option } from "./lib/options.js";

const root = join(import.meta.dirname, "../..");
const preset = (option("preset") ?? "1b") as TestModelPreset;
const maxContext = Number(option("max-context") ?? 32768);
const CONTEXTS = [0, 1024, 8192, 32768].filter((length) => length <= maxContext);
const NEW = 64;
const REPEATS = 5;
const CHUNK = 512;

/** Traced dispatches grouped by kernel and shape, largest total first. */
function summarize(trace: { kernel: string; micros: number }[]) {
  const byKernel = new Map<string, { kernel: string; calls: number; micros: number }>();
  for (const { kernel, micros } of trace) {
    const entry = byKernel.get(kernel) ?? { kernel, calls: 0, micros: 0 };
    entry.calls++;
    entry.micros += micros;
    byKernel.set(kernel, entry);
  }
  const kernels = [...byKernel.values()].sort((a, b) => b.micros - a.micros);
  return { dispatches: trace.length, totalMicros: trace.reduce((sum, t) => sum + t.micros, 0), kernels };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const directory = await benchModel(root, preset);
  // Timestamps unquantized (Dawn rounds them otherwise), for the per-kernel trace.
  const backend = await WebGpuBackend.create(["disable-dawn-features=timestamp_quantization"]);
  const { model, config } = await loadModel(directory, backend);
  const tokenizer = await loadTokenizer(directory);
  const { layers, kvHeads, headDim } = model.kvGeometry;
  const blockSize = 16;
  const blockCount = Math.ceil((maxContext + NEW * (REPEATS + 2) + CHUNK) / blockSize) + 8;
  const cache = backend.createKvCache({
    layers,
    kvHeads,
    headDim,
    blockSize,
    blockCount,
    storage: { kind: "float", dtype: "f16" },
  });
  const paging = new PagedKv(cache);
  let seed = 11;
  const randomTokens = (count: number) =>
    Uint32Array.from({ length: count }, () => 1 + ((seed = (seed * 48271) % 2147483647) % (config.vocabSize - 1)));
  process.stdout.write(`forward profile: ${backend.deviceDescription}; ${directory}\n`);

  // One forward of `count` new tokens appended to `sequence`; returns the logits tensor.
  const forward = (sequence: number, count: number) => {
    const start = paging.length(sequence);
    const slots = paging.append(sequence, count);
    return model.forward(
      {
        tokens: randomTokens(count),
        positions: Int32Array.from({ length: count }, (_, i) => start + i),
        slots,
        sequences: [
          { queryStart: 0, queryLength: count, contextLength: start + count, blockTable: paging.blockTable(sequence) },
        ],
        logitRows: Uint32Array.of(count - 1),
      },
      cache,
    );
  };

  const warm = paging.create();
  for (let i = 0; i < 3; i++) {
    const logits = forward(warm, NEW);
    await backend.read(backend.argmax(logits));
    backend.free(logits);
  }
  paging.free(warm);

  interface Row {
    context: number;
    recordMs: number;
    drainMs: number;
    readMs: number;
    totalMs: number;
    unsplitTotalMs: number;
  }
  const rows: Row[] = [];
  const traces: Record<number, ReturnType<typeof summarize>> = {};
  for (const context of CONTEXTS) {
    const sequence = paging.create();
    for (let done = 0; done < context; done += CHUNK) {
      backend.free(forward(sequence, Math.min(CHUNK, context - done)));
      await backend.flush();
    }
    // Baseline in the same run: every GEMM unsplit (as before split-K), on the same context.
    setGemmSplits(1);
    const unsplit: number[] = [];
    for (let repeat = 0; repeat < REPEATS; repeat++) {
      const started = performance.now();
      const logits = forward(sequence, NEW);
      const ids = backend.argmax(logits);
      await backend.read(ids);
      unsplit.push(performance.now() - started);
      backend.free(ids);
      backend.free(logits);
      paging.trim(sequence, context);
    }
    setGemmSplits(null);
    const record: number[] = [];
    const drain: number[] = [];
    const read: number[] = [];
    for (let repeat = 0; repeat < REPEATS; repeat++) {
      const started = performance.now();
      const logits = forward(sequence, NEW);
      const recorded = performance.now();
      await backend.flush();
      const drained = performance.now();
      const ids = backend.argmax(logits);
      await backend.read(ids);
      const readDone = performance.now();
      backend.free(ids);
      backend.free(logits);
      record.push(recorded - started);
      drain.push(drained - recorded);
      read.push(readDone - drained);
      // Back to the context alone, so each repeat sees the same length.
      paging.trim(sequence, context);
    }
    const row = {
      context,
      recordMs: median(record),
      drainMs: median(drain),
      readMs: median(read),
      totalMs: median(record.map((r, i) => r + drain[i]! + read[i]!)),
      unsplitTotalMs: median(unsplit),
    };
    rows.push(row);
    if (backend.runtime.gpu.hasTimestamps && (context === 0 || context === CONTEXTS.at(-1))) {
      backend.runtime.startTracing(2048);
      const logits = forward(sequence, NEW);
      const trace = await backend.runtime.stopTracing();
      backend.free(logits);
      paging.trim(sequence, context);
      traces[context] = summarize(trace);
    }
    paging.free(sequence);
    process.stdout.write(
      `  context ${context}: record ${row.recordMs.toFixed(2)} ms, drain ${row.drainMs.toFixed(2)} ms, read ${row.readMs.toFixed(2)} ms\n`,
    );
  }
  cache.dispose();

  const engine = new Engine(backend, model, tokenizer, {
    maxBatchSize: 8,
    prefillStepSize: CHUNK,
    maxContextLength: 0,
    kvBudgetBytes: 256 * 2 ** 20,
    kvStorage: { kind: "float", dtype: "f16" },
  });
  const engineTtft: number[] = [];
  for (let repeat = 0; repeat < REPEATS + 1; repeat++) {
    for await (const event of engine.generate({
      promptTokens: [...randomTokens(NEW)],
      maxTokens: 1,
      sampling: samplingParams({ temperature: 0 }),
      ignoreEos: true,
    })) {
      if (event.type === "done" && repeat > 0) engineTtft.push(event.timings.timeToFirstTokenMs);
    }
  }
  await engine.dispose();
  const engineMs = median(engineTtft);
  process.stdout.write(`  engine TTFT, ${NEW} tokens, no context: ${engineMs.toFixed(2)} ms\n`);

  process.stdout.write(
    `\n| context | record ms | drain ms | read ms | total ms | total, GEMMs unsplit | speed-up |\n| --- | --- | --- | --- | --- | --- | --- |\n`,
  );
  for (const row of rows) {
    process.stdout.write(
      `| ${row.context} | ${row.recordMs.toFixed(2)} | ${row.drainMs.toFixed(2)} | ${row.readMs.toFixed(2)} | ${row.totalMs.toFixed(2)} | ${row.unsplitTotalMs.toFixed(2)} | ${(row.unsplitTotalMs / row.totalMs).toFixed(2)}× |\n`,
    );
  }
  for (const [context, summary] of Object.entries(traces)) {
    process.stdout.write(
      `\nGPU time by kernel, ${NEW} rows after ${context} tokens (each dispatch alone in a timed pass): ${summary.totalMicros.toFixed(0)} µs in ${summary.dispatches} dispatches\n`,
    );
    process.stdout.write(`| kernel (workgroups) | calls | µs | share |\n| --- | --- | --- | --- |\n`);
    for (const entry of summary.kernels.slice(0, 16)) {
      process.stdout.write(
        `| ${entry.kernel} | ${entry.calls} | ${entry.micros.toFixed(0)} | ${((100 * entry.micros) / summary.totalMicros).toFixed(1)}% |\n`,
      );
    }
  }
  const name = option("name");
  if (name) {
    writeFileSync(
      join(root, "bench/results", `forward-profile-${name}.json`),
      `${JSON.stringify({ device: backend.deviceDescription, preset, newTokens: NEW, rows, engineMs, traces }, null, 2)}\n`,
    );
  }
  model.dispose();
}

await main();
