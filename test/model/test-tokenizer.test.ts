/**
 * The test-model tokenizer generator: exactly the requested number of ids, a well-formed tokenizer.json
 * in each family's layout, and the same files for the same request. (That Python's tokenizers and
 * transformers load and agree with them is conformance/tokenizer-parity.test.ts.)
 */
import { describe, expect, it, vi } from "vitest";
import { makeTestTokenizer, type TokenizerFamily } from "../../src/model/test-model/tokenizer.js";

interface TokenizerJson {
  added_tokens: Array<{ id: number; content: string; special: boolean }>;
  model: { vocab: Record<string, number>; merges: Array<[string, string]>; byte_fallback: boolean };
  decoder: { type: string };
}

const FAMILIES: TokenizerFamily[] = ["llama", "qwen2", "qwen3", "gemma3"];

function idsOf(json: TokenizerJson): Map<number, string> {
  const ids = new Map<number, string>();
  for (const [token, id] of Object.entries(json.model.vocab)) ids.set(id, token);
  for (const { id, content } of json.added_tokens) {
    // An added token may repeat a model entry (Gemma's specials are in both) but never claim another's id.
    if (ids.has(id)) expect(ids.get(id)).toBe(content);
    ids.set(id, content);
  }
  return ids;
}

describe("makeTestTokenizer", () => {
  for (const family of FAMILIES) {
    for (const vocabSize of [1000, 4099, 32000]) {
      it(`${family}: ${vocabSize} ids, each used once, none missing`, () => {
        const json = makeTestTokenizer(family, vocabSize).tokenizer as unknown as TokenizerJson;
        const ids = idsOf(json);
        expect(ids.size).toBe(vocabSize);
        expect(Math.min(...ids.keys())).toBe(0);
        expect(Math.max(...ids.keys())).toBe(vocabSize - 1);
        expect(new Set(ids.values()).size).toBe(vocabSize);
      });
    }

    it(`${family}: every merge joins two tokens of the vocabulary into a third`, () => {
      const json = makeTestTokenizer(family, 4099).tokenizer as unknown as TokenizerJson;
      const vocab = json.model.vocab;
      expect(json.model.merges.length).toBeGreaterThan(100);
      for (const [left, right] of json.model.merges) {
        expect([left in vocab, right in vocab, left + right in vocab], `${left} + ${right}`).toEqual([
          true,
          true,
          true,
        ]);
      }
    });
  }

  it("puts Llama 3's special tokens at its real ids at the real vocabulary size", () => {
    const files = makeTestTokenizer("llama", 128256);
    const json = files.tokenizer as unknown as TokenizerJson;
    const id = (content: string) => json.added_tokens.find((token) => token.content === content)?.id;
    expect([id("<|begin_of_text|>"), id("<|end_of_text|>"), id("<|eot_id|>"), id("<|python_tag|>")]).toEqual([
      128000, 128001, 128009, 128010,
    ]);
    expect(id("<|reserved_special_token_247|>")).toBe(128255);
    expect(json.added_tokens.every((token) => token.special)).toBe(true);
    expect(files.generationConfig).toEqual({ bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] });
    expect(json.model.vocab["Ġ"]).toBe(220); // GPT-2's byte order: the space byte is id 220, as in Llama 3
    expect(json.decoder.type).toBe("ByteLevel");
  });

  it("marks Qwen's tool and thinking markup as added but not special, as Qwen does", () => {
    const json = makeTestTokenizer("qwen3", 151936).tokenizer as unknown as TokenizerJson;
    const special = Object.fromEntries(json.added_tokens.map((token) => [token.content, token.special]));
    expect(special).toMatchObject({
      "<|endoftext|>": true,
      "<|im_start|>": true,
      "<|im_end|>": true,
      "<tool_call>": false,
      "</tool_call>": false,
      "<think>": false,
      "</think>": false,
      "<tool_response>": false,
    });
    expect(Object.keys(special)).toHaveLength(26);
    const qwen2 = makeTestTokenizer("qwen2", 151936).tokenizer as unknown as TokenizerJson;
    expect(qwen2.added_tokens.map((token) => token.content)).not.toContain("<think>"); // Qwen2.5 has 22, no thinking
    expect(qwen2.added_tokens).toHaveLength(22);
  });

  it("lays out Gemma 3's specials, byte-fallback tokens and unused slots like Gemma", () => {
    const files = makeTestTokenizer("gemma3", 262144);
    const json = files.tokenizer as unknown as TokenizerJson;
    const vocab = json.model.vocab;
    expect([vocab["<pad>"], vocab["<eos>"], vocab["<bos>"], vocab["<unk>"]]).toEqual([0, 1, 2, 3]);
    expect([vocab["<start_of_turn>"], vocab["<end_of_turn>"]]).toEqual([105, 106]);
    expect([vocab["<start_of_image>"], vocab["<end_of_image>"]]).toEqual([255999, 256000]);
    for (let byte = 0; byte < 256; byte++) {
      expect(vocab[`<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`]).toBe(107 + byte);
    }
    expect(json.model.byte_fallback).toBe(true);
    expect(vocab["<unused99>"]).toBeGreaterThan(363);
    expect(Object.keys(vocab).find((token) => vocab[token] === 262143)).toMatch(/^<unused\d+>$/);
    expect(files.generationConfig).toEqual({ bos_token_id: 2, eos_token_id: [1, 106], pad_token_id: 0 });
  });

  it("leaves rare characters to byte fallback in Gemma's vocabulary", () => {
    const vocab = (makeTestTokenizer("gemma3", 4099).tokenizer as unknown as TokenizerJson).model.vocab;
    expect("e" in vocab && "\u2581" in vocab).toBe(true);
    expect("🎉" in vocab).toBe(false); // once in the corpus
  });

  it("ships a chat template, special tokens and end-of-turn ids for every family", () => {
    for (const family of FAMILIES) {
      const files = makeTestTokenizer(family, 2000);
      expect(typeof files.tokenizerConfig.chat_template, family).toBe("string");
      expect(files.tokenizerConfig.clean_up_tokenization_spaces, family).toBe(false);
      expect(Array.isArray(files.generationConfig.eos_token_id), family).toBe(true);
    }
  });

  it("generates the same files for the same request, also in a fresh module", async () => {
    const first = JSON.stringify(makeTestTokenizer("qwen3", 5000));
    expect(JSON.stringify(makeTestTokenizer("qwen3", 5000))).toBe(first);
    vi.resetModules(); // drops the module's cache of learned merges, so they are learned again
    const fresh = await import("../../src/model/test-model/tokenizer.js");
    expect(JSON.stringify(fresh.makeTestTokenizer("qwen3", 5000))).toBe(first);
  });

  it("generates a 262,144-id Gemma tokenizer without delay", () => {
    // Not a timed assertion (the test timeout is the bound): a slow generator shows up as a slow test.
    const files = makeTestTokenizer("gemma3", 262144);
    expect(Object.keys((files.tokenizer as unknown as TokenizerJson).model.vocab)).toHaveLength(262144);
  });

  it("refuses sizes that cannot hold the family's fixed tokens, naming the minimum", () => {
    expect(() => makeTestTokenizer("llama", 400)).toThrow(
      "vocabSize 400 is too small for a llama tokenizer: its special, byte and character tokens need at least 512 ids",
    );
    expect(() => makeTestTokenizer("gemma3", 300)).toThrow(/too small for a gemma3 tokenizer/);
    expect(() => makeTestTokenizer("qwen3", 1.5)).toThrow("vocabSize must be a positive integer, got 1.5");
    expect(() => makeTestTokenizer("mistral" as TokenizerFamily, 1000)).toThrow(
      'unknown tokenizer family "mistral" (known: llama, qwen2, qwen3, gemma3)',
    );
  });
});
