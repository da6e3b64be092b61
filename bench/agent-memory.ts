/**
 * The headline figure: time to first token of an agent's follow-up turn at growing context, from each
 * place its KV can come from, against baselines measured in the same run.
 *   cold     the follow-up prompt with nothing cached (the whole context is prefilled);
 *   hot      the agent's cache in backend memory: only the new tokens are prefilled (median of three);
 *            each turn is sent once the previous one has settled (the engine writes an answer's last
 *            token's K/V in one more row after its `done`: see Engine.beginSettle), as a client that
 *            reads the answer before it sends the next turn does; once more sent the moment the
 *            answer arrives ("at once": it waits for that row), and once more after a pause of
 *            IDLE_MS (the GPU's clocks drop when it idles);
 *   warm     the agent evicted to disk first, reloaded on the request (median of three);
 *   restart  a new engine and memory over the same cache directory (a server restart);
 *   new-only the prefill of the same number of new tokens with no context at all, median of five
 *            (the hot target: hot ≤ 1.5× this at every length).
 * Also: reload throughput against `dd` reading the same files in the same run, and KV bytes per
 * token for float (f16), 8-bit and 4-bit storage.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist
 *   node dist/bench/agent-memory.js [--preset tiny|1b|8b|12b] [--arch llama|gemma3_text|…] [--max-context N]
 *     [--backend webgpu|mlx] [--name=NAME] [--kv-mb N] [--trace-reloads]
 * Writes bench/results/agent-memory-<name>.json. --trace-reloads prints each reload's timeline
 * (bench/lib/reload-trace.ts).
 */
import { join } from "node:path";
import { rmSync, writeFileSync } from "node:fs";
import { createBackend, type BackendName } from "../backends/registry.js";
import type { EngineOptions } from "../src/engine/engine.js";
import type { GenerationEvent } from "../src/engine/events.js";
import { samplingParams } from "../src/engine/sampling.js";
import type { MemoryStats } from "../src/memory/agent-memory.js";
import { AgentStore } from "../src/memory/persistence.js";
import type { TestModelPreset } from "../src/model/test-model/presets.js";
import { benchArch, benchModel } from "./lib/bench-model.js";
import { ENGINE_SHAPE, openMemoryEngine, prepareMemoryEngine } from "./lib/memory-engine.js";
import { warmUp } from "../src/engine/warm-up.js";
import { ddRead } from "./lib/dd.js";
import { option } from "./lib/options.js";

const root = join(import.meta.dirname, "../..");
const preset = (option("preset") ?? "1b") as TestModelPreset;
/** --arch: the generated model's architecture (llama; gemma3_text for the server's default model's shape). */
const arch = benchArch(option("arch"));
const backendName = (option("backend") ?? "webgpu") as BackendName;
const maxContext = Number(option("max-context") ?? 32768);
const CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768].filter((length) => length <= maxContext);
const NEW_TOKENS = 64;
/** Hot and warm turns per length: the median is reported. */
const TURNS = 3;
/** New-only runs per length: five, since a run of three had two of them stalled by the collector. */
const NEW_ONLY_RUNS = 5;
/**
 * The pause before the "hot after idle" turn. An idle H200 drops its SM clock from 1980 to 345 MHz
 * within a second, and one short forward does not bring it back (RESULTS, "The GPU's clocks"): a
 * turn that follows a pause, as an agent's next turn does, runs at the low clock.
 */
const IDLE_MS = 3000;

const median = <T>(runs: T[], by: (run: T) => number) => [...runs].sort((a, b) => by(a) - by(b))[runs.length >> 1]!;

async function ttft(
  events: AsyncIterable<GenerationEvent>,
): Promise<{ ms: number; queuedMs: number; cached: number; tokens: number[] }> {
  const tokens: number[] = [];
  for await (const event of events) {
    if (event.type === "delta") tokens.push(...event.tokenIds);
    else if (event.type === "done") {
      const { timeToFirstTokenMs: ms, queuedMs } = event.timings;
      return { ms, queuedMs, cached: event.usage.cachedTokens, tokens };
    }
  }
  throw new Error("no done event");
}

/** One reload's size and time, taken apart, from the memory's counters before and after it. */
function reloadParts(before: MemoryStats, after: MemoryStats) {
  return {
    reloadBytes: after.reloadBytes - before.reloadBytes,
    reloadMs: after.reloadMs - before.reloadMs,
    reloadOpenMs: after.reloadOpenMs - before.reloadOpenMs,
    reloadReadWaitMs: after.reloadReadWaitMs - before.reloadReadWaitMs,
    reloadImportMs: after.reloadImportMs - before.reloadImportMs,
  };
}

function describeReload(reload: ReturnType<typeof reloadParts>): string {
  return (
    `${(reload.reloadBytes / 1e6).toFixed(1)} MB in ${reload.reloadMs.toFixed(1)} ms ` +
    `(opening ${reload.reloadOpenMs.toFixed(1)}, waiting for reads ${reload.reloadReadWaitMs.toFixed(1)}, ` +
    `importing ${reload.reloadImportMs.toFixed(1)})`
  );
}

async function main(): Promise<void> {
  const directory = await benchModel(root, preset, arch);
  const backend = await createBackend(backendName);
  if (process.argv.includes("--trace-reloads")) (await import("./lib/reload-trace.js")).installReloadTrace();
  const setup = await prepareMemoryEngine(directory, backend, Number(option("kv-mb") ?? 6144) * 2 ** 20);
  const { model, config, cacheDirectory: cacheDir } = setup;
  const open = () => openMemoryEngine(setup);
  let { memory, engine } = open();
  await memory.start(); // as the server does (its reader threads start here)
  const warmUpShape = { ...ENGINE_SHAPE, vocabSize: config.vocabSize };
  await warmUp(engine, warmUpShape); // as the server does before it reports ready
  let seed = 7;
  const randomTokens = (count: number) =>
    Array.from({ length: count }, () => 1 + ((seed = (seed * 48271) % 2147483647) % (config.vocabSize - 1)));
  /** One turn; unless `atOnce`, sent when every earlier turn has settled (not counted in its time). */
  const ask = async (agentId: string, prompt: number[], atOnce = false) => {
    if (!atOnce) await engine.settled();
    return ttft(
      engine.generate({
        promptTokens: prompt,
        maxTokens: 1,
        sampling: samplingParams({ temperature: 0 }),
        ignoreEos: true,
        memory: { agentId, tenant: "bench" },
      }),
    );
  };
  /** Prefills of a throwaway agent for about `ms`: the GPU's clocks are up when it returns. */
  const keepGpuBusy = async (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until) await ask("busy", randomTokens(512));
  };
  process.stdout.write(`agent-memory benchmark: ${backend.name} on ${backend.deviceDescription}; ${directory}\n`);
  // Compile the kernels of every shape measured below: a first turn, its settle row, its follow-up
  // (64 rows over a cached context) and a short prompt alone. Without it the first row paid for compilation.
  const warmupPrompt = randomTokens(600);
  const warmup = await ask("warmup", warmupPrompt);
  await ask("warmup", [...warmupPrompt, ...warmup.tokens, ...randomTokens(NEW_TOKENS)]);
  await ask("warmup-short", randomTokens(NEW_TOKENS));
  // And a reload: the process's first one makes the KV cache's import pipelines, the packed buffers
  // and their bind groups. Its time is kept in the results, apart from the rows.
  await memory.evictAgent("bench", "warmup");
  const beforeWarmupReload = memory.stats();
  await ask("warmup", [...warmupPrompt, ...warmup.tokens, ...randomTokens(2 * NEW_TOKENS)]);
  const warmupReload = reloadParts(beforeWarmupReload, memory.stats());
  process.stdout.write(`  first reload of the process: ${describeReload(warmupReload)}\n`);

  interface Row {
    context: number;
    coldMs: number;
    hotMs: number;
    /** Of hotMs, before the first step: the memory lookup and scheduling. */
    hotQueuedMs: number;
    /** Every hot turn (hotMs is their median): a single turn was at the mercy of one GC pause. */
    hotRuns: { ms: number; queuedMs: number }[];
    /** One more hot turn, IDLE_MS after the last work: at the GPU's idle clock. */
    hotAfterIdleMs: number;
    /** One more hot turn, sent the moment the previous answer arrived: it waits for the settle row. */
    hotAtOnceMs: number;
    hotAtOnceQueuedMs: number;
    warmMs: number;
    restartMs: number;
    /** Of restartMs, before the first step. */
    restartQueuedMs: number;
    /** The restart turn's reload, taken apart. */
    restartReload: ReturnType<typeof reloadParts> | null;
    newOnlyMs: number;
    reloadBytes: number;
    reloadMs: number;
    reloadImportMs: number;
    reloadOpenMs: number;
    reloadReadWaitMs: number;
    /**
     * Every warm turn: its time, its time before the first step (the lookup, the reload in it, and
     * scheduling), and its reload's parts (warmMs and the reload figures are medians).
     */
    warmRuns: { ms: number; queuedMs: number; reload: ReturnType<typeof reloadParts> }[];
  }
  const rows: Row[] = [];
  const conversations = new Map<number, number[]>();
  for (const context of CONTEXTS) {
    const agent = `agent-${context}`;
    // Cold: the first turn of this agent is a follow-up whose context nobody has seen. It follows a
    // second of other prefills, so that it starts, like the hot turns after it, at full clocks.
    await keepGpuBusy(1000);
    let prompt = randomTokens(context);
    const cold = await ask(agent, prompt);
    // Hot: the next turn adds the answer and NEW_TOKENS new tokens; three times (each turn a little
    // longer), the median kept.
    const hotRuns: { ms: number; queuedMs: number }[] = [];
    let hot = cold;
    for (let run = 0; run < TURNS; run++) {
      prompt = [...prompt, ...hot.tokens, ...randomTokens(NEW_TOKENS)];
      hot = await ask(agent, prompt);
      if (hot.cached !== prompt.length - NEW_TOKENS) throw new Error(`hot turn reused ${hot.cached} tokens`);
      hotRuns.push({ ms: hot.ms, queuedMs: hot.queuedMs });
    }
    prompt = [...prompt, ...hot.tokens, ...randomTokens(NEW_TOKENS)];
    hot = await ask(agent, prompt, true);
    if (hot.cached !== prompt.length - NEW_TOKENS) throw new Error(`hot turn reused ${hot.cached} tokens`);
    const hotAtOnce = hot;
    // New-only: the median of five fresh agents, each printed with its time before the first step.
    const newOnlyRuns: { ms: number; queuedMs: number }[] = [];
    for (let run = 0; run < NEW_ONLY_RUNS; run++) {
      newOnlyRuns.push(await ask(`fresh-${context}-${run}`, randomTokens(NEW_TOKENS)));
    }
    const newOnly = median(newOnlyRuns, (run) => run.ms);
    const described = newOnlyRuns.map((run) => `${run.ms.toFixed(1)} (${run.queuedMs.toFixed(1)} queued)`);
    process.stdout.write(`  ${context}: new-only runs ${described.join(", ")} ms\n`);
    // Hot after idle: the same, after a pause.
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    prompt = [...prompt, ...hot.tokens, ...randomTokens(NEW_TOKENS)];
    hot = await ask(agent, prompt);
    if (hot.cached !== prompt.length - NEW_TOKENS) throw new Error(`hot turn reused ${hot.cached} tokens`);
    const hotAfterIdle = hot;
    // Warm: evicted to disk, then the next turn; three times (each turn a little longer), the median
    // kept, as `dd` below is the median of three reads. Each turn's reload is counted from the
    // memory's counters around it.
    const warmRuns: Row["warmRuns"] = [];
    let warm!: Awaited<ReturnType<typeof ask>>;
    for (let run = 0; run < TURNS; run++) {
      await memory.evictAgent("bench", agent);
      // The eviction leaves the GPU idle for a second or more (the export, the write, fsync): its clock
      // has fallen to the floor when the turn starts, and the turn's step runs at it, as "hot after
      // idle" does. A second of other prefills here first was tried: the step then ran at full clocks,
      // but the reload, right after them, was up to twice as slow for the 1B model
      // (bench/results/agent-memory-h200-busy-before-warm.json).
      prompt = [...prompt, ...(run === 0 ? hot.tokens : warm.tokens), ...randomTokens(NEW_TOKENS)];
      const before = memory.stats();
      warm = await ask(agent, prompt);
      if (warm.cached !== prompt.length - NEW_TOKENS) throw new Error(`warm turn reused ${warm.cached} tokens`);
      warmRuns.push({ ms: warm.ms, queuedMs: warm.queuedMs, reload: reloadParts(before, memory.stats()) });
    }
    await memory.evictAgent("bench", agent);
    const warmMs = median(warmRuns, (run) => run.ms).ms;
    const { reload } = median(warmRuns, (run) => run.reload.reloadMs);
    conversations.set(context, [...prompt, ...warm.tokens]);
    rows.push({
      context,
      coldMs: cold.ms,
      hotMs: median(hotRuns, (run) => run.ms).ms,
      hotQueuedMs: median(hotRuns, (run) => run.ms).queuedMs,
      hotRuns,
      hotAfterIdleMs: hotAfterIdle.ms,
      hotAtOnceMs: hotAtOnce.ms,
      hotAtOnceQueuedMs: hotAtOnce.queuedMs,
      warmMs,
      restartMs: 0,
      restartQueuedMs: 0,
      restartReload: null,
      newOnlyMs: newOnly.ms,
      ...reload,
      warmRuns,
    });
    process.stdout.write(
      `  ${context}: cold ${cold.ms.toFixed(0)} ms, hot ${hotRuns.map((run) => `${run.ms.toFixed(1)} (${run.queuedMs.toFixed(1)} before its step)`).join(" / ")} ms, at once ${hotAtOnce.ms.toFixed(1)} (${hotAtOnce.queuedMs.toFixed(1)} before its step), after ${IDLE_MS / 1000} s idle ${hotAfterIdle.ms.toFixed(1)} ms, warm ${warmRuns.map((run) => `${run.ms.toFixed(1)} (${run.queuedMs.toFixed(1)} before its step, reload ${run.reload.reloadMs.toFixed(1)})`).join(" / ")} ms; median reload ${describeReload(reload)}\n`,
    );
  }

  // Restart: a new engine and memory over the same directory.
  await memory.flush();
  await engine.dispose();
  ({ memory, engine } = open());
  await memory.start();
  // A restarted server warms up before it reports ready: that also makes the new KV cache's first
  // use (a first reload into it took ~500 ms) part of the start, not of the first turn.
  await warmUp(engine, warmUpShape);
  for (const row of rows) {
    const prompt = [...conversations.get(row.context)!, ...randomTokens(NEW_TOKENS)];
    const before = memory.stats();
    const restarted = await ask(`agent-${row.context}`, prompt);
    row.restartReload = reloadParts(before, memory.stats());
    if (restarted.cached !== prompt.length - NEW_TOKENS) throw new Error(`restart reused ${restarted.cached}`);
    row.restartMs = restarted.ms;
    row.restartQueuedMs = restarted.queuedMs;
    process.stdout.write(
      `  ${row.context}: restart ${restarted.ms.toFixed(1)} ms (${restarted.queuedMs.toFixed(1)} before its step); reload ${describeReload(row.restartReload)}\n`,
    );
  }

  // dd reading the same files (after ours: both find them wherever the OS keeps them).
  const dd = rows.map((row) => ({
    context: row.context,
    ...ddRead(join(cacheDir, AgentStore.fileName("bench", `agent-${row.context}`))),
  }));

  const perToken = (storage: EngineOptions["kvStorage"]) => {
    const { layers, kvHeads, headDim } = model.kvGeometry;
    try {
      const cache = backend.createKvCache({ layers, kvHeads, headDim, blockSize: 16, blockCount: 1, storage });
      const bytes = cache.bytesPerBlock / 16;
      cache.dispose();
      return bytes;
    } catch {
      return null; // e.g. quantized storage needs headDim to be a multiple of 64
    }
  };
  const bytesPerToken = {
    f16: perToken({ kind: "float", dtype: "f16" }),
    q8: perToken({ kind: "quantized", bits: 8, groupSize: 64 }),
    q4: perToken({ kind: "quantized", bits: 4, groupSize: 64 }),
  };
  await engine.dispose();
  model.dispose();
  rmSync(cacheDir, { recursive: true, force: true });

  const line = (cells: (string | number)[]) => process.stdout.write(`| ${cells.join(" | ")} |\n`);
  line([
    "context",
    "cold ms",
    "hot ms",
    "hot at once ms",
    "hot after idle ms",
    "warm ms",
    "restart ms",
    "new-only ms",
    "hot/new-only",
    "cold/hot",
    "cold/warm",
  ]);
  for (const row of rows) {
    line([
      row.context,
      row.coldMs.toFixed(0),
      row.hotMs.toFixed(1),
      row.hotAtOnceMs.toFixed(1),
      row.hotAfterIdleMs.toFixed(1),
      row.warmMs.toFixed(1),
      row.restartMs.toFixed(1),
      row.newOnlyMs.toFixed(1),
      (row.hotMs / row.newOnlyMs).toFixed(2),
      (row.coldMs / row.hotMs).toFixed(0),
      (row.coldMs / row.warmMs).toFixed(0),
    ]);
  }
  line([
    "context",
    "KV MB reloaded",
    "reload ms",
    "of it: opening ms",
    "waiting for reads ms",
    "handing blocks to the cache ms",
    "reload GB/s",
    "dd GB/s (same file)",
    "reload / dd",
  ]);
  rows.forEach((row, index) => {
    const ours = row.reloadBytes / 1e6 / row.reloadMs;
    const theirs = dd[index]!.bytes / 1e6 / dd[index]!.ms;
    line([
      row.context,
      (row.reloadBytes / 1e6).toFixed(1),
      row.reloadMs.toFixed(1),
      row.reloadOpenMs.toFixed(1),
      row.reloadReadWaitMs.toFixed(1),
      row.reloadImportMs.toFixed(1),
      ours.toFixed(2),
      theirs.toFixed(2),
      (ours / theirs).toFixed(2),
    ]);
  });
  line(["KV bytes/token f16", "8-bit", "4-bit"]);
  line([String(bytesPerToken.f16), String(bytesPerToken.q8), String(bytesPerToken.q4)]);
  const name = option("name") ?? backend.name;
  const out = join(root, "bench/results", `agent-memory-${name}.json`);
  writeFileSync(
    out,
    `${JSON.stringify({ backend: backend.deviceDescription, model: directory, warmupReload, rows, dd, bytesPerToken, at: new Date().toISOString() }, null, 2)}\n`,
  );
  process.stdout.write(`wrote ${out}\n`);
}

await main();
