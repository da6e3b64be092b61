/**
 * Streaming detokenization: fed one id at a time (or in random chunks), the deltas joined equal
 * tokenizer.decode(all ids) — whose agreement with Python's tokenizers is checked in
 * conformance/tokenizer-parity.test.ts — for any id sequence, and no delta ends inside a character.
 */
import { describe, expect, it } from "vitest";
import { StreamingDetokenizer } from "../../src/model/detokenizer.js";
import { makeTestTokenizer, type TokenizerFamily } from "../../src/model/test-model/tokenizer.js";
import { ModelTokenizer } from "../../src/model/tokenizer.js";
import { PARITY_TEXTS, sentencePieceVariants } from "../../conformance/support/tokenizer-cases.js";
import { random, type Random } from "../../conformance/support/random.js";

function tokenizerFor(family: TokenizerFamily, vocabSize: number, variant?: string): ModelTokenizer {
  const files = makeTestTokenizer(family, vocabSize);
  const tokenizer = variant ? sentencePieceVariants(files.tokenizer)[variant]! : files.tokenizer;
  return new ModelTokenizer({ tokenizer, tokenizerConfig: files.tokenizerConfig });
}

const TOKENIZERS: Array<[string, () => ModelTokenizer]> = [
  ["llama (byte-level BPE)", () => tokenizerFor("llama", 4000)],
  ["qwen3 (byte-level BPE)", () => tokenizerFor("qwen3", 2000)],
  ["gemma3 (byte fallback, ▁)", () => tokenizerFor("gemma3", 3000)],
  ["Llama 2 style (Strip decoder)", () => tokenizerFor("gemma3", 1200, "spm-strip")],
  ["Metaspace decoder", () => tokenizerFor("gemma3", 1200, "spm-metaspace")],
];

/** The id of the token for each byte value (a byte-level base token, or <0xNN>): the tokens that split characters. */
function byteIds(tokenizer: ModelTokenizer): number[] {
  if (tokenizer.decoding.kind === "byte-level") {
    const ids: number[] = [];
    for (let id = 0; id < 256; id++) ids[tokenizer.tokenBytes(id)[0]!] = id; // the first 256 ids are the bytes
    return ids;
  }
  return Array.from({ length: 256 }, (_, b) =>
    tokenizer.tokenToId(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)!,
  );
}

function sequences(tokenizer: ModelTokenizer, rng: Random): number[][] {
  const pick = <T>(items: readonly T[]) => items[rng.integer(items.length)]!;
  const bytes = byteIds(tokenizer);
  const specials = [...tokenizer.specialTokenIds];
  const out: number[][] = [];
  for (const text of PARITY_TEXTS) out.push(tokenizer.encode(text));
  for (let i = 0; i < 150; i++) {
    const ids: number[] = [];
    const length = 1 + rng.integer(30);
    while (ids.length < length) {
      const kind = rng.integer(6);
      if (kind === 0)
        ids.push(rng.integer(tokenizer.vocabSize + 3)); // any id, a few without a token
      else if (kind <= 2)
        ids.push(pick(bytes)); // runs of byte tokens, valid or not
      else if (kind === 3) ids.push(pick(specials));
      else ids.push(...tokenizer.encode(pick(PARITY_TEXTS), { addSpecialTokens: false }).slice(0, 1 + rng.integer(6)));
    }
    out.push(ids);
  }
  // Valid multi-byte characters cut into single bytes.
  const utf8 = new TextEncoder().encode("é中🙂👩‍💻");
  out.push(Array.from(utf8, (byte) => bytes[byte]!));
  return out;
}

function stream(tokenizer: ModelTokenizer, ids: number[], skipSpecialTokens: boolean, chunk: () => number) {
  const detokenizer = new StreamingDetokenizer(tokenizer, { skipSpecialTokens });
  const deltas: string[] = [];
  for (let i = 0; i < ids.length;) {
    const size = chunk();
    deltas.push(size === 1 ? detokenizer.push(ids[i]!) : detokenizer.pushAll(ids.slice(i, i + size)));
    i += size;
  }
  deltas.push(detokenizer.flush());
  return deltas;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe.each(TOKENIZERS)("StreamingDetokenizer, %s", (name, make) => {
  const tokenizer = make();

  for (const skipSpecialTokens of [false, true]) {
    it(`joins deltas into decode(all ids) for any sequence (skipSpecialTokens: ${skipSpecialTokens})`, () => {
      const rng = random(`detokenizer ${name} ${skipSpecialTokens}`);
      for (const ids of sequences(tokenizer, rng)) {
        const expected = tokenizer.decode(ids, { skipSpecialTokens });
        expect(stream(tokenizer, ids, skipSpecialTokens, () => 1).join(""), JSON.stringify(ids)).toBe(expected);
        expect(stream(tokenizer, ids, skipSpecialTokens, () => 1 + rng.integer(5)).join(""), JSON.stringify(ids)).toBe(
          expected,
        );
      }
    });
  }

  it("never emits part of a character: a valid text streams without replacement characters", () => {
    for (const text of ["é中🙂👩‍💻 naïve — 日本語", ...PARITY_TEXTS.filter((text) => !text.includes("\uFFFD"))]) {
      const ids = tokenizer.encode(text, { addSpecialTokens: false });
      const deltas = stream(tokenizer, ids, true, () => 1);
      for (const delta of deltas) {
        expect(delta, JSON.stringify(text)).not.toContain("\uFFFD");
        expect(delta, JSON.stringify(text)).not.toMatch(LONE_SURROGATE);
      }
      expect(deltas.join(""), JSON.stringify(text)).toBe(tokenizer.decode(ids, { skipSpecialTokens: true }));
    }
  });

  it("holds back a split character until its last byte and releases it then", () => {
    const bytes = byteIds(tokenizer);
    const detokenizer = new StreamingDetokenizer(tokenizer);
    const pushed = [...new TextEncoder().encode("中")].map((byte) => detokenizer.push(bytes[byte]!));
    if (tokenizer.decoding.kind === "byte-level") {
      expect(pushed).toEqual(["", "", "中"]);
      expect(detokenizer.flush()).toBe("");
    } else if (tokenizer.decoding.fallbackByte(bytes[0xe4]!) >= 0) {
      // A byte-fallback run is released by the next ordinary token or flush: a later byte could still spoil it.
      expect(pushed).toEqual(["", "", ""]);
      expect(detokenizer.flush()).toBe("中");
    } else {
      // A decoder without ByteFallback (Metaspace alone) shows <0xNN> tokens as they are, as the reference does.
      expect(pushed.join("") + detokenizer.flush()).toBe("<0xE4><0xB8><0xAD>");
    }
  });

  it("can be reused after flush", () => {
    const ids = tokenizer.encode("Hello, world!", { addSpecialTokens: false });
    const detokenizer = new StreamingDetokenizer(tokenizer);
    const first = detokenizer.pushAll(ids) + detokenizer.flush();
    expect(detokenizer.pushAll(ids) + detokenizer.flush()).toBe(first);
  });
});
