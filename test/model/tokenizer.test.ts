/**
 * The runtime tokenizer of a model directory: which files it reads and in what order, the special ids
 * it derives, the byte view of tokens, the chat-template details transformers has (null fields, reasoning
 * aliases, named templates), and one-line errors that name the file. Token-level agreement with Python
 * is conformance/tokenizer-parity.test.ts.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { makeTestTokenizer, type TokenizerFamily } from "../../src/model/test-model/tokenizer.js";
import { loadTokenizer, type ChatTemplateMessage } from "../../src/model/tokenizer.js";
import { PARITY_TEXTS } from "../../conformance/support/tokenizer-cases.js";
import { scratchDir } from "../support/cli.js";

type Files = Record<string, unknown>;

/** Writes a model directory's tokenizer files; `overrides` replaces or (with undefined) removes files. */
function modelDir(
  family: TokenizerFamily,
  vocabSize = 2000,
  overrides: Record<string, Files | string | undefined> = {},
) {
  const generated = makeTestTokenizer(family, vocabSize);
  const files: Record<string, Files | string | undefined> = {
    "tokenizer.json": generated.tokenizer,
    "tokenizer_config.json": generated.tokenizerConfig,
    "special_tokens_map.json": generated.specialTokensMap,
    "generation_config.json": generated.generationConfig,
    ...overrides,
  };
  const dir = join(scratchDir("tokenizer-"), family);
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    if (content !== undefined)
      writeFileSync(join(dir, name), typeof content === "string" ? content : JSON.stringify(content));
  }
  return { dir, generated };
}

const concat = (parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((part) => [...part]));

describe("loadTokenizer", () => {
  it("derives BOS and the stop ids from generation_config, tokenizer_config and the end-of-turn tokens", async () => {
    const expected: Record<TokenizerFamily, { bos: string | null; eos: string[] }> = {
      llama: { bos: "<|begin_of_text|>", eos: ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"] },
      qwen2: { bos: "<|endoftext|>", eos: ["<|im_end|>", "<|endoftext|>"] },
      qwen3: { bos: "<|endoftext|>", eos: ["<|im_end|>", "<|endoftext|>"] },
      gemma3: { bos: "<bos>", eos: ["<eos>", "<end_of_turn>"] },
    };
    for (const [family, { bos, eos }] of Object.entries(expected) as Array<[TokenizerFamily, typeof expected.llama]>) {
      const tokenizer = await loadTokenizer(modelDir(family).dir);
      expect(tokenizer.vocabSize, family).toBe(2000);
      expect(tokenizer.bosTokenId, family).toBe(bos === null ? null : tokenizer.tokenToId(bos));
      expect([...tokenizer.eosTokenIds].sort(), family).toEqual(eos.map((token) => tokenizer.tokenToId(token)).sort());
    }
  });

  it("stops at the template's end-of-turn tokens even without generation_config.json", async () => {
    const tokenizer = await loadTokenizer(modelDir("llama", 2000, { "generation_config.json": undefined }).dir);
    const names = [...tokenizer.eosTokenIds].map((id) => tokenizer.idToToken(id)).sort();
    expect(names).toEqual(["<|eom_id|>", "<|eot_id|>"]);
    expect(tokenizer.bosTokenId).toBe(tokenizer.tokenToId("<|begin_of_text|>"));
  });

  it("errors name the file and the problem", async () => {
    await expect(loadTokenizer(modelDir("qwen3", 2000, { "tokenizer.json": undefined }).dir)).rejects.toThrow(
      /tokenizer\.json: file not found$/,
    );
    await expect(loadTokenizer(modelDir("qwen3", 2000, { "tokenizer.json": "{ not json" }).dir)).rejects.toThrow(
      /tokenizer\.json: invalid JSON \(/,
    );
    await expect(loadTokenizer(modelDir("qwen3", 2000, { "tokenizer_config.json": "[1, 2]" }).dir)).rejects.toThrow(
      /tokenizer_config\.json: invalid JSON \(not a JSON object\)/,
    );
    const json = makeTestTokenizer("llama", 1000).tokenizer;
    const wordPiece = { ...json, decoder: { type: "WordPiece", prefix: "##" } };
    await expect(loadTokenizer(modelDir("llama", 1000, { "tokenizer.json": wordPiece }).dir)).rejects.toThrow(
      /tokenizer\.json: decoder \{"type":"WordPiece","prefix":"##"\} is not supported \(supported: ByteLevel, Metaspace/,
    );
    const badTemplate = { ...makeTestTokenizer("llama", 1000).tokenizerConfig, chat_template: "{% if %}" };
    await expect(loadTokenizer(modelDir("llama", 1000, { "tokenizer_config.json": badTemplate }).dir)).rejects.toThrow(
      /tokenizer_config\.json: chat template "default" does not parse: /,
    );
  });
});

describe("tokenBytes", () => {
  for (const family of ["llama", "qwen3", "gemma3"] as const) {
    it(`${family}: the bytes of a text's tokens are the text's UTF-8`, async () => {
      const tokenizer = await loadTokenizer(modelDir(family, 3000).dir);
      for (const text of PARITY_TEXTS.filter((text) => !/[<]/.test(text))) {
        const ids = tokenizer.encode(text, { addSpecialTokens: false });
        // Qwen normalizes to NFC before tokenizing; the others keep the text as it is.
        const expected = new TextEncoder().encode(family === "qwen3" ? text.normalize("NFC") : text);
        expect(concat(ids.map((id) => tokenizer.tokenBytes(id))), JSON.stringify(text)).toEqual(expected);
      }
    });
  }

  it("maps byte-level characters, byte-fallback tokens and ▁ to the bytes they stand for", async () => {
    const llama = await loadTokenizer(modelDir("llama").dir);
    expect([...llama.tokenBytes(llama.tokenToId("Ġ")!)]).toEqual([0x20]);
    expect([...llama.tokenBytes(llama.tokenToId("Ċ")!)]).toEqual([0x0a]);
    expect([...llama.tokenBytes(llama.tokenToId("Ã")!)]).toEqual([0xc3]);
    expect(new TextDecoder().decode(llama.tokenBytes(llama.tokenToId("<|eot_id|>")!))).toBe("<|eot_id|>");
    expect(llama.tokenBytes(llama.vocabSize + 10)).toHaveLength(0);
    const gemma = await loadTokenizer(modelDir("gemma3").dir);
    expect([...gemma.tokenBytes(gemma.tokenToId("<0xE4>")!)]).toEqual([0xe4]);
    expect(new TextDecoder().decode(gemma.tokenBytes(gemma.tokenToId("\u2581the")!))).toBe(" the");
  });
});

describe("decode", () => {
  it("keeps Qwen's tool-call markup when skipping special tokens, and drops the turn markers", async () => {
    const tokenizer = await loadTokenizer(modelDir("qwen3").dir);
    const ids = tokenizer.encode('<|im_start|>assistant\n<tool_call>\n{"name": "f"}\n</tool_call><|im_end|>');
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe(
      'assistant\n<tool_call>\n{"name": "f"}\n</tool_call>',
    );
    expect(tokenizer.decode([])).toBe("");
  });
});

describe("chat templates", () => {
  const user: ChatTemplateMessage[] = [{ role: "user", content: "Hi" }];

  it("encodes a rendered prompt without a second BOS", async () => {
    for (const family of ["llama", "gemma3"] as const) {
      const tokenizer = await loadTokenizer(modelDir(family).dir);
      const ids = tokenizer.renderAndEncode(user, { addGenerationPrompt: true });
      expect(
        ids.filter((id) => id === tokenizer.bosTokenId),
        family,
      ).toHaveLength(1);
      expect(ids[0], family).toBe(tokenizer.bosTokenId);
    }
  });

  it("takes chat_template.jinja over tokenizer_config.json, and chat_template.json when nothing else has one", async () => {
    const config = { ...makeTestTokenizer("qwen3", 2000).tokenizerConfig };
    const jinja = await loadTokenizer(
      modelDir("qwen3", 2000, { "chat_template.jinja": "jinja:{{ messages[0].content }}" }).dir,
    );
    expect(jinja.applyChatTemplate(user)).toBe("jinja:Hi");
    delete config.chat_template;
    const fromJson = modelDir("qwen3", 2000, {
      "tokenizer_config.json": config,
      "chat_template.json": { chat_template: "json:{{ messages | length }}" },
    });
    expect((await loadTokenizer(fromJson.dir)).applyChatTemplate(user)).toBe("json:1");
    const none = await loadTokenizer(modelDir("qwen3", 2000, { "tokenizer_config.json": config }).dir);
    expect(none.hasChatTemplate).toBe(false);
    expect(() => none.applyChatTemplate(user)).toThrow(
      "the model has no chat template (looked for chat_template.jinja, tokenizer_config.json chat_template and chat_template.json)",
    );
  });

  it("picks the tool_use template when tools are given and the default one otherwise, as transformers does", async () => {
    const config = {
      ...makeTestTokenizer("llama", 1000).tokenizerConfig,
      chat_template: [
        { name: "default", template: "default:{{ tools is none }}" },
        { name: "tool_use", template: "tools:{{ tools | length }}" },
      ],
    };
    const tokenizer = await loadTokenizer(modelDir("llama", 1000, { "tokenizer_config.json": config }).dir);
    expect(tokenizer.applyChatTemplate(user)).toBe("default:true");
    expect(tokenizer.applyChatTemplate(user, { tools: [{ type: "function" }] })).toBe("tools:1");
  });

  it("passes the special tokens and extra variables to the template", async () => {
    const config = {
      ...makeTestTokenizer("gemma3", 1000).tokenizerConfig,
      chat_template: "{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ date_string }}|{{ add_generation_prompt }}",
    };
    const tokenizer = await loadTokenizer(modelDir("gemma3", 1000, { "tokenizer_config.json": config }).dir);
    const rendered = tokenizer.applyChatTemplate(user, {
      extra: { date_string: "01 Jan 2025" },
      addGenerationPrompt: true,
    });
    expect(rendered).toBe("<bos>|<eos>|<pad>|01 Jan 2025|true");
  });

  it("drops null fields and reads reasoning under any of its names, like transformers", async () => {
    const tokenizer = await loadTokenizer(modelDir("qwen3").dir);
    const call = { type: "function", function: { name: "f", arguments: { x: 1 } } };
    const render = (assistant: ChatTemplateMessage) =>
      tokenizer.applyChatTemplate([{ role: "user", content: "Q" }, assistant], { tools: [] });
    expect(render({ role: "assistant", content: null, tool_calls: [call] })).toBe(
      render({ role: "assistant", tool_calls: [call] }),
    );
    const withReasoning = render({ role: "assistant", reasoning_content: "because", content: "A" });
    expect(withReasoning).toContain("<think>\nbecause\n</think>\n\nA");
    expect(render({ role: "assistant", thinking: "because", content: "A" })).toBe(withReasoning);
    expect(render({ role: "assistant", reasoning: "because", content: "A" })).toBe(withReasoning);
  });

  it("reports a template that refuses a conversation in one line naming the file", async () => {
    const { dir } = modelDir("llama");
    const tokenizer = await loadTokenizer(dir);
    const call = (name: string) => ({ type: "function", function: { name, arguments: {} } });
    const parallel: ChatTemplateMessage[] = [
      { role: "user", content: "two calls" },
      { role: "assistant", tool_calls: [call("a"), call("b")] },
    ];
    expect(() => tokenizer.applyChatTemplate(parallel)).toThrow(
      `${join(dir, "tokenizer_config.json")}: chat template failed to render: This model only supports single tool-calls at once!`,
    );
    expect(() => tokenizer.applyChatTemplate([])).toThrow(
      `${join(dir, "tokenizer_config.json")}: cannot render an empty conversation`,
    );
  });
});
