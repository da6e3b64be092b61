/**
 * The per-token cost of constrained decoding's mask on real-size vocabularies: Gemma 3's 262,144 ids
 * (SentencePiece with byte fallback) and Llama 3's 128,256 (byte-level BPE), built by the test-model
 * tokenizer generator (its merges are learned from a small corpus; the rest of the ids are the family's
 * reserved-token names, so the trie is shaped like a real vocabulary's only in part).
 *
 * Workload: tool_choice "required" over two tools (a Bash-like tool with nested objects, an array, an
 * enum and optional fields, and a weather tool), `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>`,
 * with the tokenizer's own encoding of six realistic calls as the sampled tokens. At every step:
 *
 *   - ours, first request: a freshly compiled grammar (DFA and mask cache empty);
 *   - ours, same tools again: the grammar's DFA and masks kept from the first request (the server
 *     keeps a compiled grammar per tool set);
 *   - ours, no mask cache: the trie walk at every step over a warm DFA (the cost when no state repeats);
 *   - baseline 1, per-token DFA: every token's bytes run through the same warm DFA, no trie;
 *   - baseline 2, per-token NFA: every token's bytes run through the NFA (no DFA, no trie), on a few
 *     steps only (it takes seconds per step).
 * Every mask of ours is checked equal to baseline 1's.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist && node dist/bench/grammar-mask.js [--name=NAME]
 * Writes bench/results/grammar-mask-<name>.json (default name: cpu).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTestTokenizer, type TokenizerFamily } from "../src/model/test-model/tokenizer.js";
import { ModelTokenizer } from "../src/model/tokenizer.js";
import { UNKNOWN, DEAD } from "../src/tools/grammar/dfa.js";
import {
  compileGrammar,
  createMatcher,
  naiveMask,
  TokenVocabulary,
  type CompiledGrammar,
  type GrammarNode,
} from "../src/tools/grammar/index.js";
import { describeMachine } from "./lib/machine.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const name = process.argv.find((arg) => arg.startsWith("--name="))?.slice("--name=".length) ?? "cpu";
const NAIVE_NFA_STEPS = 4;

const BASH = {
  type: "object",
  properties: {
    command: { type: "string", description: "The command to execute" },
    timeout: { type: "integer", description: "Optional timeout in milliseconds" },
    description: { type: "string", maxLength: 120 },
    run_in_background: { type: "boolean" },
    env: {
      type: "array",
      items: {
        type: "object",
        properties: { name: { type: "string" }, value: { type: "string" } },
        required: ["name", "value"],
        additionalProperties: false,
      },
    },
    sandbox: { type: "string", enum: ["none", "read-only", "workspace-write"] },
  },
  required: ["command"],
  additionalProperties: false,
};
const WEATHER = {
  type: "object",
  properties: {
    location: { type: "string", description: "City and country" },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
    days: { type: "integer" },
  },
  required: ["location"],
  additionalProperties: false,
};
const TOOLS: Record<string, Record<string, unknown>> = { Bash: BASH, get_weather: WEATHER };
const GRAMMAR: GrammarNode = {
  kind: "choice",
  options: Object.entries(TOOLS).map(([tool, schema]) => ({
    kind: "sequence",
    items: [
      { kind: "literal", text: `<tool_call>\n{"name": "${tool}", "arguments": ` },
      { kind: "json", schema },
      { kind: "literal", text: "}\n</tool_call>" },
    ],
  })),
};
const CALLS: Array<[string, unknown]> = [
  ["Bash", { command: "ls -la src/tools && git status --short", description: "List the tools folder" }],
  ["Bash", { command: "npx vitest run test/tools/grammar.test.ts", timeout: 600000, run_in_background: false }],
  [
    "Bash",
    {
      command: 'grep -rn "TokenVocabulary" src | head -20',
      env: [{ name: "LC_ALL", value: "C" }],
      sandbox: "read-only",
    },
  ],
  ["get_weather", { location: "San Francisco, CA", unit: "celsius", days: 3 }],
  ["get_weather", { location: "Zürich, Schweiz", unit: "fahrenheit" }],
  ["get_weather", { location: "東京, 日本", days: 7 }],
];
const callText = ([tool, args]: [string, unknown]) =>
  `<tool_call>\n{"name": "${tool}", "arguments": ${serialize(args)}}\n</tool_call>`;
function serialize(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(serialize).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value)
      .map(([key, item]) => `${JSON.stringify(key)}: ${serialize(item)}`)
      .join(", ")}}`;
  }
  return JSON.stringify(value);
}

const micros = (start: bigint) => Number(process.hrtime.bigint() - start) / 1000;

interface Summary {
  steps: number;
  medianMicros: number;
  p99Micros: number;
  meanMicros: number;
  maxMicros: number;
}
function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (fraction: number) => sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
  const round = (value: number) => Math.round(value * 10) / 10;
  return {
    steps: sorted.length,
    medianMicros: round(at(0.5)),
    p99Micros: round(at(0.99)),
    meanMicros: round(sorted.reduce((sum, value) => sum + value, 0) / sorted.length),
    maxMicros: round(sorted.at(-1)!),
  };
}

/** Baseline 1: each token's bytes through the grammar's (warm) DFA, one token at a time. */
function perTokenDfaMask(grammar: CompiledGrammar, vocabulary: TokenVocabulary, state: number, ends: number[]) {
  const dfa = grammar.dfa;
  const mask = new Uint32Array((vocabulary.size + 31) >>> 5);
  const endSet = new Set(ends);
  for (let id = 0; id < vocabulary.size; id++) {
    const bytes = vocabulary.tokenBytes(id);
    if (bytes === null || endSet.has(id)) continue;
    let at = state;
    for (let index = 0; index < bytes.length && at !== DEAD; index++) {
      const known = dfa.transitions[at * 256 + bytes[index]!]!;
      at = known === UNKNOWN ? dfa.step(at, bytes[index]!) : known;
    }
    if (at !== DEAD) mask[id >>> 5]! |= 1 << (id & 31);
  }
  if (dfa.isAccepting(state)) for (const id of ends) mask[id >>> 5]! |= 1 << (id & 31);
  return mask;
}

function dfaStateAfter(grammar: CompiledGrammar, bytes: Uint8Array): number {
  const dfa = grammar.dfa;
  let state = dfa.intern(grammar.nfa.initial());
  for (const byte of bytes) state = dfa.step(state, byte);
  return state;
}

const sameMask = (a: Uint32Array, b: Uint32Array) =>
  a.length === b.length && a.every((word, index) => word === b[index]);

function measure(family: TokenizerFamily, vocabSize: number) {
  let start = process.hrtime.bigint();
  const tokenizer = new ModelTokenizer(makeTestTokenizer(family, vocabSize));
  const tokenizerMs = micros(start) / 1000;
  start = process.hrtime.bigint();
  const vocabulary = TokenVocabulary.fromTokenizer(tokenizer);
  const vocabularyMs = micros(start) / 1000;
  const ends = [...tokenizer.eosTokenIds];
  const sequences = CALLS.map((call) => tokenizer.encode(callText(call), { addSpecialTokens: false }));

  start = process.hrtime.bigint();
  const grammar = compileGrammar(GRAMMAR);
  const compileMs = micros(start) / 1000;

  const pass = (cacheMasks: boolean) => {
    const times: number[] = [];
    const acceptTimes: number[] = [];
    for (const tokens of sequences) {
      const matcher = createMatcher(grammar, vocabulary, ends, { cacheMasks });
      for (const token of [...tokens, ends[0]!]) {
        let begin = process.hrtime.bigint();
        const mask = matcher.mask();
        times.push(micros(begin));
        if (!(mask[token >>> 5]! & (1 << (token & 31)))) throw new Error(`token ${token} not allowed`);
        begin = process.hrtime.bigint();
        matcher.accept(token);
        acceptTimes.push(micros(begin));
      }
    }
    return { times, acceptTimes };
  };
  const first = pass(true);
  const again = pass(true);
  const uncached = pass(false);

  // The baselines, on the same states (the bytes before each step), checked against our mask.
  const baselineDfa: number[] = [];
  const baselineNfa: number[] = [];
  let checked = 0;
  for (const tokens of sequences) {
    const matcher = createMatcher(grammar, vocabulary, ends);
    const prefix: number[] = [];
    for (const token of tokens) {
      const bytes = Uint8Array.from(prefix);
      const state = dfaStateAfter(grammar, bytes);
      let begin = process.hrtime.bigint();
      const baseline = perTokenDfaMask(grammar, vocabulary, state, ends);
      baselineDfa.push(micros(begin));
      if (!sameMask(baseline, matcher.mask())) throw new Error(`${family}: masks differ at step ${prefix.length}`);
      checked++;
      if (baselineNfa.length < NAIVE_NFA_STEPS && prefix.length % 7 === 3) {
        begin = process.hrtime.bigint();
        const naive = naiveMask(grammar, vocabulary, bytes, ends);
        baselineNfa.push(micros(begin));
        if (!sameMask(naive, baseline)) throw new Error(`${family}: naive mask differs`);
      }
      matcher.accept(token);
      prefix.push(...vocabulary.tokenBytes(token)!);
    }
  }
  return {
    family,
    vocabSize,
    trieNodes: vocabulary.trie.byte.length,
    tokenizerMs: Math.round(tokenizerMs),
    vocabularyMs: Math.round(vocabularyMs),
    compileMs: Math.round(compileMs * 10) / 10,
    nfaStates: grammar.nfa.stateCount,
    dfaStates: grammar.dfa.stateCount,
    steps: first.times.length,
    masksChecked: checked,
    firstRequest: summarize(first.times),
    sameToolsAgain: summarize(again.times),
    noMaskCache: summarize(uncached.times),
    accept: summarize(first.acceptTimes),
    baselinePerTokenDfa: summarize(baselineDfa),
    baselinePerTokenNfa: summarize(baselineNfa),
  };
}

function main() {
  const runs = [measure("gemma3", 262_144), measure("llama", 128_256)];
  const line = (cells: Array<string | number>) => process.stdout.write(`| ${cells.map(String).join(" | ")} |\n`);
  line(["vocabulary", "trie nodes", "build ms", "steps", "what", "median µs", "p99 µs", "mean µs"]);
  for (const run of runs) {
    const rows: Array<[string, Summary]> = [
      ["ours, first request", run.firstRequest],
      ["ours, same tools again", run.sameToolsAgain],
      ["ours, no mask cache", run.noMaskCache],
      ["accept()", run.accept],
      ["baseline: per-token DFA", run.baselinePerTokenDfa],
      [`baseline: per-token NFA (${run.baselinePerTokenNfa.steps} steps)`, run.baselinePerTokenNfa],
    ];
    for (const [what, summary] of rows) {
      line([
        `${run.family} ${run.vocabSize}`,
        run.trieNodes,
        run.vocabularyMs,
        run.steps,
        what,
        summary.medianMicros,
        summary.p99Micros,
        summary.meanMicros,
      ]);
    }
  }
  const out = join(root, "bench/results", `grammar-mask-${name}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ machine: describeMachine(), runs, at: new Date().toISOString() }, null, 2));
  process.stdout.write(`wrote ${out}\n`);
}

main();
