/**
 * The host cost of handing out KV blocks (PagedKv) once the pool has seen many frees: a server that
 * has run a while, where agents come and go. Workload, on a pool of 32,768 blocks (a 16 GiB cache of
 * the 8B model at 16 tokens a block): every block taken and given back in random order, then prompts of
 * 1,024 blocks (a 16K-token prompt) allocated and freed in turn. Per block handed out, µs, for
 *   ours      PagedKv (its free list is a doubly linked list over block ids);
 *   baseline  the same oldest-freed-first pool kept in a JavaScript Set (PagedKv's before), whose first
 *             entry is what a Set iterator finds after its deleted slots.
 * Both hand out the same blocks in the same order (checked).
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist && node dist/bench/kv-paging.js [--name=NAME]
 * Writes bench/results/kv-paging-<name>.json (default name: cpu).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PagedKv } from "../backends/kv-paging.js";
import { describeMachine } from "./lib/machine.js";
import { option } from "./lib/options.js";

const BLOCKS = 32_768;
const PROMPT_BLOCKS = 1_024;
const PROMPTS = 64;
const name = option("name") ?? "cpu";

/** The free pool as PagedKv kept it before: a Set in insertion order. */
class SetPool {
  private readonly free = new Set<number>(Array.from({ length: BLOCKS }, (_, block) => block));
  take(): number {
    const { value, done } = this.free.values().next();
    if (done) throw new Error("out of blocks");
    this.free.delete(value);
    return value;
  }
  give(block: number): void {
    this.free.add(block);
  }
}

function shuffled(count: number, seed: number): number[] {
  const order = Array.from({ length: count }, (_, index) => index);
  for (let i = count - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

function runOurs(): { microsecondsPerBlock: number; handedOut: number[] } {
  const spec = {
    layers: 1,
    kvHeads: 1,
    headDim: 8,
    blockSize: 1,
    blockCount: BLOCKS,
    storage: { kind: "float", dtype: "f32" },
  } as const;
  const kv = new PagedKv({ spec, copyBlocks: () => {} });
  // Every block in a sequence of its own, given back in random order.
  const singles = Array.from({ length: BLOCKS }, () => {
    const sequence = kv.create();
    kv.append(sequence, 1);
    return sequence;
  });
  for (const index of shuffled(BLOCKS, 7)) kv.free(singles[index]!);
  const handedOut: number[] = [];
  const start = performance.now();
  for (let prompt = 0; prompt < PROMPTS; prompt++) {
    const sequence = kv.create();
    kv.append(sequence, PROMPT_BLOCKS);
    handedOut.push(...kv.blockTable(sequence));
    kv.free(sequence);
  }
  return { microsecondsPerBlock: ((performance.now() - start) * 1000) / (PROMPTS * PROMPT_BLOCKS), handedOut };
}

function runBaseline(): { microsecondsPerBlock: number; handedOut: number[] } {
  const pool = new SetPool();
  const singles = Array.from({ length: BLOCKS }, () => pool.take());
  for (const index of shuffled(BLOCKS, 7)) pool.give(singles[index]!);
  const handedOut: number[] = [];
  const start = performance.now();
  for (let prompt = 0; prompt < PROMPTS; prompt++) {
    const blocks = Array.from({ length: PROMPT_BLOCKS }, () => pool.take());
    handedOut.push(...blocks);
    for (const block of blocks) pool.give(block);
  }
  return { microsecondsPerBlock: ((performance.now() - start) * 1000) / (PROMPTS * PROMPT_BLOCKS), handedOut };
}

const runs: { ours: number; baseline: number }[] = [];
for (let repeat = 0; repeat < 3; repeat++) {
  const ours = runOurs();
  const baseline = runBaseline();
  if (ours.handedOut.join() !== baseline.handedOut.join()) throw new Error("the two pools handed out different blocks");
  runs.push({ ours: ours.microsecondsPerBlock, baseline: baseline.microsecondsPerBlock });
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const ours = median(runs.map((run) => run.ours));
const baseline = median(runs.map((run) => run.baseline));
process.stdout.write(
  `| pool | µs per block handed out (median of 3) |\n| --- | --- |\n| ours (linked list) | ${ours.toFixed(3)} |\n` +
    `| baseline (Set) | ${baseline.toFixed(3)} |\n`,
);
const folder = join(import.meta.dirname, "../../bench/results");
mkdirSync(folder, { recursive: true });
const file = join(folder, `kv-paging-${name}.json`);
writeFileSync(
  file,
  `${JSON.stringify({ machine: describeMachine(), runs, ours, baseline, at: new Date().toISOString() }, null, 2)}\n`,
);
process.stdout.write(`wrote ${file}\n`);
