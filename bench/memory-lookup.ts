/**
 * Host time of a hot agent's turn in the memory layer, before and after its step: AgentMemory.acquire
 * (match the prompt against the agent's cached tokens, hash the prompt's blocks past what is known,
 * look them up among the tenant's shared blocks, fork the agent's sequence) and release (hash and
 * register the turn's blocks, keep its tokens), for an agent at 1K–32K tokens of context with 64 new
 * tokens a turn, medians of 20 turns. No backend: PagedKv over a cache that only records copies.
 * Baseline in the same run: the block hashing as acquire called it before (over a copy of the prompt
 * cut to its limit) against the call it makes now (the prompt in place, up to the limit).
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist && node dist/bench/memory-lookup.js [--name=NAME]
 * Writes bench/results/memory-lookup-<name>.json (default name: cpu).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KvCache } from "../backends/contract.js";
import { PagedKv } from "../backends/kv-paging.js";
import { AgentMemory } from "../src/memory/agent-memory.js";
import { blockHashes } from "../src/memory/prefix-index.js";
import { createLogger } from "../src/logging.js";
import { describeMachine } from "./lib/machine.js";
import { option } from "./lib/options.js";

const CONTEXTS = [1024, 4096, 16384, 32768];
const NEW_TOKENS = 64;
const TURNS = 20;
const BLOCK_SIZE = 16;
const name = option("name") ?? "cpu";
const silent = createLogger("ERROR");

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function timed(run: () => void, repeats = 200): number {
  for (let i = 0; i < 10; i++) run();
  const start = performance.now();
  for (let i = 0; i < repeats; i++) run();
  return (performance.now() - start) / repeats;
}

interface Row {
  context: number;
  acquireMs: number;
  releaseMs: number;
  hashingWithCopyMs: number;
  hashingInPlaceMs: number;
}

async function measure(context: number): Promise<Row> {
  const spec = {
    layers: 1,
    kvHeads: 1,
    headDim: 8,
    blockSize: BLOCK_SIZE,
    blockCount: Math.ceil((context + NEW_TOKENS * (TURNS + 2)) / BLOCK_SIZE) * 2,
    storage: { kind: "float", dtype: "f16" },
  } as const;
  const cache = { spec, copyBlocks: () => {} };
  const paging = new PagedKv(cache);
  const memory = new AgentMemory({ maxAgentsInMemory: 10, lruEvictionEnabled: true, warm: null, logger: silent });
  // No warm tier: the memory layer then never touches the cache's storage, only PagedKv's tables.
  memory.attach(paging, cache as unknown as KvCache);
  const scope = { tenant: "bench", agentId: "agent" };
  let tokens = Array.from({ length: context }, (_, i) => (i * 7919) % 50_000);
  const first = paging.create();
  paging.append(first, tokens.length);
  memory.release(scope, first, tokens, "stop");
  const acquires: number[] = [];
  const releases: number[] = [];
  let prompt = tokens;
  for (let turn = 0; turn < TURNS; turn++) {
    prompt = [...tokens, ...Array.from({ length: NEW_TOKENS }, (_, i) => 60_000 + turn * NEW_TOKENS + i)];
    const start = performance.now();
    const { kvSequence, reusedTokens } = await memory.acquire(scope, prompt);
    acquires.push(performance.now() - start);
    paging.append(kvSequence, prompt.length - reusedTokens + 1);
    const answered = [...prompt, 7];
    const before = performance.now();
    memory.release(scope, kvSequence, answered, "stop");
    releases.push(performance.now() - before);
    tokens = answered;
  }
  const limit = prompt.length - 1;
  // As in a hot turn: every block but those of the new tokens is known from the agent's last turn.
  const known = {
    hashes: blockHashes("bench", prompt, BLOCK_SIZE),
    blocks: Math.floor((limit - NEW_TOKENS) / BLOCK_SIZE),
  };
  return {
    context,
    acquireMs: median(acquires),
    releaseMs: median(releases),
    hashingWithCopyMs: timed(() => blockHashes("bench", prompt.slice(0, limit), BLOCK_SIZE, known)),
    hashingInPlaceMs: timed(() => blockHashes("bench", prompt, BLOCK_SIZE, known, limit)),
  };
}

// A first pass over every context warms the JIT up; the second is kept.
for (const context of CONTEXTS) await measure(context);
const rows: Row[] = [];
for (const context of CONTEXTS) rows.push(await measure(context));
process.stdout.write(
  "| context | acquire ms | release ms | block hashing as before (prompt copied) ms | as now (in place) ms |\n" +
    "| --- | --- | --- | --- | --- |\n" +
    rows
      .map(
        (row) =>
          `| ${row.context} | ${row.acquireMs.toFixed(3)} | ${row.releaseMs.toFixed(3)} | ` +
          `${row.hashingWithCopyMs.toFixed(3)} | ${row.hashingInPlaceMs.toFixed(3)} |`,
      )
      .join("\n") +
    "\n",
);
const folder = join(import.meta.dirname, "../../bench/results");
mkdirSync(folder, { recursive: true });
const file = join(folder, `memory-lookup-${name}.json`);
writeFileSync(file, `${JSON.stringify({ machine: describeMachine(), rows, at: new Date().toISOString() }, null, 2)}\n`);
process.stdout.write(`wrote ${file}\n`);
