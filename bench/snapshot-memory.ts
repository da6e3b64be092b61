/**
 * What the host memory of one large eviction costs the main thread: an agent's read-back (4.3 GB by
 * default, an 8B model's 32K-token agent in f16) in 64 MiB batches, 1 GiB of buffers kept from an
 * earlier eviction, the rest new. Two ways to get the new memory, in one run, each three times:
 *   per batch   one 64 MiB allocation per batch (SnapshotBuffers.take, what evictions did before);
 *   views       a few 1 GiB allocations cut into batch-sized views (SnapshotBuffers.takeAll).
 * Each batch is filled (as exportBlocks fills it), then all are given back and dropped, as after the
 * file is written. Counted: the garbage collections ("gc" performance entries) and their pauses from
 * the first allocation until a second after the last batch was dropped, and the wall time of
 * allocating and filling.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist
 *   node dist/bench/snapshot-memory.js [--gb N] [--name=NAME]
 * Writes bench/results/snapshot-memory-<name>.json.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { SnapshotBuffers } from "../src/memory/snapshot-buffers.js";
import { describeMachine } from "./lib/machine.js";
import { option } from "./lib/options.js";

const totalBytes = Number(option("gb") ?? 4.3) * 1e9;
const BATCH = 64 * 2 ** 20;
const KEEP = 2 ** 30;
const ROUNDS = 3;

const collections: PerformanceEntry[] = [];
new PerformanceObserver((list) => collections.push(...list.getEntries())).observe({ entryTypes: ["gc"] });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function measure(way: "per batch" | "views") {
  const buffers = new SnapshotBuffers(BATCH, KEEP);
  // An earlier eviction left keepBytes of buffers behind.
  const earlier = buffers.takeAll(Array.from({ length: KEEP / BATCH }, () => BATCH));
  earlier.forEach((buffer) => buffer.fill(1));
  buffers.give(earlier);
  await sleep(1000);
  const sizes = Array.from({ length: Math.ceil(totalBytes / BATCH) }, () => BATCH);
  collections.length = 0;
  const started = performance.now();
  let taken: Uint8Array[] = way === "views" ? buffers.takeAll(sizes) : sizes.map((size) => buffers.take(size));
  for (const buffer of taken) {
    buffer.fill(7);
    await new Promise((resolve) => setImmediate(resolve)); // an export's await between batches
  }
  const filledMs = performance.now() - started;
  buffers.give(taken);
  taken = [];
  await sleep(1000);
  const pauses = collections.map((entry) => entry.duration);
  return {
    way,
    filledMs,
    collections: pauses.length,
    pausedMs: pauses.reduce((sum, ms) => sum + ms, 0),
    longestMs: Math.max(0, ...pauses),
  };
}

const results = [];
for (let round = 0; round < ROUNDS; round++) {
  for (const way of ["per batch", "views"] as const) results.push(await measure(way));
}
process.stdout.write(`snapshot memory: ${(totalBytes / 1e9).toFixed(1)} GB in 64 MiB batches, 1 GiB kept\n`);
process.stdout.write(`| way | allocate and fill ms | collections | paused ms | longest ms |\n`);
for (const row of results) {
  process.stdout.write(
    `| ${row.way} | ${row.filledMs.toFixed(0)} | ${row.collections} | ${row.pausedMs.toFixed(1)} | ${row.longestMs.toFixed(1)} |\n`,
  );
}
const out = join(import.meta.dirname, "../../bench/results", `snapshot-memory-${option("name") ?? "cpu"}.json`);
writeFileSync(
  out,
  `${JSON.stringify({ machine: describeMachine(), totalBytes, results, at: new Date().toISOString() }, null, 2)}\n`,
);
process.stdout.write(`wrote ${out}\n`);
