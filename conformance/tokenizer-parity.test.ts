/**
 * Tokenization and chat-template parity with the Python references: for each family, the tokenizer
 * make-test-model generates is written to a directory, and Python's `tokenizers` and transformers'
 * AutoTokenizer / apply_chat_template (conformance/python/tokenizer_oracle.py) answer on the same
 * texts, id sequences and conversations. Ours must agree exactly. If the oracle cannot run, the tests
 * fail: they never skip.
 */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { makeTestTokenizer, type TokenizerFamily } from "../src/model/test-model/tokenizer.js";
import { loadTokenizer, type ModelTokenizer } from "../src/model/tokenizer.js";
import { REPO_ROOT, scratchDir } from "../test/support/cli.js";
import { random } from "./support/random.js";
import { PARITY_CONVERSATIONS, PARITY_TEXTS, sentencePieceVariants } from "./support/tokenizer-cases.js";

const run = promisify(execFile);
const ORACLE = join(REPO_ROOT, "conformance/python/tokenizer_oracle.py");

// A small vocabulary (only part of the learned merges) and each family's real size (merges plus fillers).
const CASES: Array<{ family: TokenizerFamily; vocabSize: number }> = [
  { family: "llama", vocabSize: 1000 },
  { family: "llama", vocabSize: 128256 },
  { family: "qwen2", vocabSize: 3000 },
  { family: "qwen3", vocabSize: 151936 },
  { family: "gemma3", vocabSize: 1200 },
  { family: "gemma3", vocabSize: 262144 },
];

type Rendered = { text?: string; ids?: number[]; error?: string };

interface OracleAnswer {
  name: string;
  vocab_size: number;
  transformers_len: number;
  encode: number[][];
  encode_plain: number[][];
  transformers_encode: number[][];
  decode: string[];
  decode_skip: string[];
  transformers_decode: string[];
  chat_text: Rendered[];
  chat_ids: Rendered[];
}

interface Case {
  name: string;
  vocabSize: number;
  tokenizer: ModelTokenizer;
  decodeInputs: number[][];
  answer: OracleAnswer;
}

/** Id sequences that stress decoding: random ids, slices of real encodings that cut characters apart, byte runs. */
function decodeInputs(name: string, tokenizer: ModelTokenizer, vocabSize: number): number[][] {
  const rng = random(`tokenizer parity ${name}`);
  const inputs: number[][] = [[]];
  const randomIds = (count: number, below: number) => Array.from({ length: count }, () => rng.integer(below));
  for (let i = 0; i < 12; i++) inputs.push(randomIds(1 + rng.integer(40), vocabSize));
  const byteIds = Array.from({ length: 256 }, (_, b) => b).flatMap((b) => {
    const token =
      tokenizer.decoding.kind === "byte-level" ? undefined : `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
    const id = token === undefined ? b : tokenizer.tokenToId(token);
    return id === undefined ? [] : [id];
  });
  for (let i = 0; i < 12; i++)
    inputs.push(Array.from({ length: 1 + rng.integer(12) }, () => byteIds[rng.integer(256)]!));
  for (const text of PARITY_TEXTS) {
    const ids = tokenizer.encode(text);
    inputs.push(ids);
    const start = rng.integer(ids.length + 1);
    inputs.push(ids.slice(start, start + 1 + rng.integer(8)));
  }
  const specials = [...tokenizer.specialTokenIds];
  inputs.push([specials[0]!, ...tokenizer.encode("中文 🙂", { addSpecialTokens: false }).slice(0, 3), specials[1]!, 5]);
  inputs.push([vocabSize + 5, 3, vocabSize + 100]); // ids without a token are dropped
  // Tokens made of several "▁" (whitespace runs) first: leading-space rules differ on them.
  const spaces = [...Array(vocabSize).keys()].filter((id) => /^\u2581{2,}/.test(tokenizer.idToToken(id) ?? ""));
  for (const id of spaces.slice(0, 4)) inputs.push([id, ...randomIds(3, vocabSize)]);
  return inputs;
}

const cases: Case[] = [];
const decodeOnly: Array<{ name: string; tokenizer: ModelTokenizer; decodeInputs: number[][]; answer?: OracleAnswer }> =
  [];

beforeAll(async () => {
  const root = scratchDir("tokenizer-parity-");
  const specs = [];
  for (const { family, vocabSize } of CASES) {
    const name = `${family}-${vocabSize}`;
    const dir = join(root, name);
    const files = makeTestTokenizer(family, vocabSize);
    await run("mkdir", ["-p", dir]);
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(files.tokenizer));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(files.tokenizerConfig));
    writeFileSync(join(dir, "special_tokens_map.json"), JSON.stringify(files.specialTokensMap));
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify(files.generationConfig));
    const tokenizer = await loadTokenizer(dir);
    const inputs = decodeInputs(name, tokenizer, vocabSize);
    cases.push({ name, vocabSize, tokenizer, decodeInputs: inputs, answer: undefined as unknown as OracleAnswer });
    specs.push({ name, dir, decode: inputs });
  }
  const gemma = makeTestTokenizer("gemma3", 1200);
  for (const [name, json] of Object.entries(sentencePieceVariants(gemma.tokenizer))) {
    const dir = join(root, name);
    await run("mkdir", ["-p", dir]);
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(json));
    const tokenizer = await loadTokenizer(dir);
    const inputs = decodeInputs(name, tokenizer, 1200);
    decodeOnly.push({ name, tokenizer, decodeInputs: inputs });
    specs.push({ name, dir, decode: inputs, decode_only: true });
  }
  const request = join(root, "request.json");
  writeFileSync(
    request,
    JSON.stringify({ tokenizers: specs, texts: PARITY_TEXTS, conversations: PARITY_CONVERSATIONS }),
  );
  const result = join(root, "answers.json");
  await run("python3", [ORACLE, request, result], { maxBuffer: 64 * 1024 * 1024 });
  const answers = JSON.parse(readFileSync(result, "utf8")) as OracleAnswer[];
  for (const entry of [...cases, ...decodeOnly]) entry.answer = answers.find((answer) => answer.name === entry.name)!;
}, 120_000);

describe.each(CASES.map(({ family, vocabSize }) => `${family}-${vocabSize}`))("%s", (name) => {
  const get = () => cases.find((entry) => entry.name === name)!;

  it("has exactly the requested vocabulary, in tokenizers and transformers", () => {
    const { answer, vocabSize, tokenizer } = get();
    expect([answer.vocab_size, answer.transformers_len, tokenizer.vocabSize]).toEqual([
      vocabSize,
      vocabSize,
      vocabSize,
    ]);
  });

  it("encodes every text as tokenizers does, with and without special tokens", () => {
    const { answer, tokenizer } = get();
    PARITY_TEXTS.forEach((text, i) => {
      expect(tokenizer.encode(text), JSON.stringify(text)).toEqual(answer.encode[i]);
      expect(tokenizer.encode(text, { addSpecialTokens: false }), JSON.stringify(text)).toEqual(answer.encode_plain[i]);
      // transformers builds its own pipeline for some classes (Qwen2Tokenizer, GemmaTokenizer): it must agree too.
      expect(answer.transformers_encode[i], JSON.stringify(text)).toEqual(answer.encode[i]);
    });
  });

  it("decodes any id sequence as tokenizers does, skipping special tokens or not", () => {
    const { answer, tokenizer, decodeInputs } = get();
    decodeInputs.forEach((ids, i) => {
      expect(tokenizer.decode(ids), JSON.stringify(ids)).toBe(answer.decode[i]);
      expect(tokenizer.decode(ids, { skipSpecialTokens: true }), JSON.stringify(ids)).toBe(answer.decode_skip[i]);
      expect(answer.transformers_decode[i], JSON.stringify(ids)).toBe(answer.decode[i]);
    });
  });

  it("renders every conversation as transformers' apply_chat_template does", () => {
    const { answer, tokenizer } = get();
    PARITY_CONVERSATIONS.forEach((conversation, i) => {
      const expected = answer.chat_text[i]!;
      const render = () =>
        tokenizer.applyChatTemplate(conversation.messages, {
          tools: conversation.tools,
          addGenerationPrompt: true,
          extra: conversation.extra,
        });
      if (expected.error !== undefined) {
        expect(render, conversation.name).toThrow(expected.error);
      } else {
        expect(render(), conversation.name).toBe(expected.text);
      }
    });
  });

  it("encodes every rendered conversation as apply_chat_template(tokenize=True) does", () => {
    const { answer, tokenizer } = get();
    PARITY_CONVERSATIONS.forEach((conversation, i) => {
      const expected = answer.chat_ids[i]!;
      if (expected.error !== undefined) return; // the rendering test checks that both sides refuse it
      const ids = tokenizer.renderAndEncode(conversation.messages, {
        tools: conversation.tools,
        addGenerationPrompt: true,
        extra: conversation.extra,
      });
      expect(ids, conversation.name).toEqual(expected.ids);
    });
  });
});

describe("decoders make-test-model does not write (Llama 2 / Mistral style)", () => {
  it.each(["spm-strip", "spm-metaspace"])("%s decodes any id sequence as tokenizers does", (name) => {
    const { answer, tokenizer, decodeInputs } = decodeOnly.find((entry) => entry.name === name)!;
    decodeInputs.forEach((ids, i) => {
      expect(tokenizer.decode(ids), JSON.stringify(ids)).toBe(answer!.decode[i]);
      expect(tokenizer.decode(ids, { skipSpecialTokens: true }), JSON.stringify(ids)).toBe(answer!.decode_skip[i]);
    });
  });
});
