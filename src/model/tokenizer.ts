/**
 * A model directory's tokenizer: encoding with @huggingface/tokenizers, decoding with the semantics of
 * the Rust `tokenizers` library (token-decoding.ts), special-token ids, and the model's own chat
 * template rendered with @huggingface/jinja the way transformers' apply_chat_template renders it.
 *
 * Files read, as transformers reads them: tokenizer.json (required); tokenizer_config.json (special
 * tokens, chat_template); special_tokens_map.json and generation_config.json when present; the chat
 * template from chat_template.jinja, else tokenizer_config.json's chat_template (a string, or a list of
 * {name, template} where "tool_use" is picked when tools are given and "default" otherwise), else
 * chat_template.json. `clean_up_tokenization_spaces` is ignored: it rewrites " ." as "." (breaking code)
 * and cannot be applied to a stream.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import * as hfTokenizers from "@huggingface/tokenizers";
import {
  buildTokenDecoding,
  decodeFallbackRun,
  stripLeadingSpaces,
  TokenizerConfigError,
  type TokenDecoding,
} from "./token-decoding.js";

export { TokenizerConfigError } from "./token-decoding.js";

export class ChatTemplateError extends Error {
  override name = "ChatTemplateError";
}

/** A chat message as chat templates read it (OpenAI-style fields; extra fields pass through). */
export interface ChatTemplateMessage {
  role: string;
  content?: string | Array<Record<string, unknown>> | null;
  [field: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Tool definitions, e.g. {type: "function", function: {name, description, parameters}}. */
  tools?: ReadonlyArray<Record<string, unknown>>;
  addGenerationPrompt?: boolean;
  /** More template variables, e.g. enable_thinking (Qwen3) or date_string (Llama). */
  extra?: Record<string, unknown>;
}

/** The files of a tokenizer, as found in a model directory (JSON already parsed). */
export interface TokenizerFiles {
  tokenizer: unknown;
  tokenizerConfig?: Record<string, unknown>;
  specialTokensMap?: Record<string, unknown>;
  generationConfig?: Record<string, unknown>;
  /** The content of chat_template.jinja, which wins over tokenizer_config.json's chat_template. */
  chatTemplateJinja?: string;
  /** The content of chat_template.json, used when nothing else provides a template. */
  chatTemplateJson?: Record<string, unknown>;
}

// Tokens that end an assistant turn in the families' templates; they stop generation when the vocabulary has them.
const END_OF_TURN_TOKENS = ["<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>"];
const REASONING_FIELDS = ["reasoning_content", "thinking", "reasoning"];

/**
 * The part of @huggingface/tokenizers we use. Its type declarations import their own files without
 * extensions, which NodeNext resolution cannot follow, so the class is typed here.
 */
interface TextEncoderModel {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
}
const HfTokenizer = (hfTokenizers as unknown as { Tokenizer: new (json: object, config: object) => TextEncoderModel })
  .Tokenizer;

const oneLine = (message: string) => message.replace(/\s*\n\s*/g, " ").trim();

function tokenContent(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as { content?: unknown }).content === "string") {
    return (value as { content: string }).content;
  }
  return null;
}

function idList(value: unknown): number[] {
  if (typeof value === "number" && Number.isInteger(value)) return [value];
  return Array.isArray(value) ? value.filter((id): id is number => Number.isInteger(id)) : [];
}

interface ChatTemplates {
  byName: ReadonlyMap<string, Template>;
  source: string;
  /** The templates' Jinja text, joined (tool-call format detection reads it). */
  text: string;
}

export class ModelTokenizer {
  /** Number of ids the tokenizer defines (its largest id + 1). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: ReadonlySet<number>;
  /** Added tokens marked special: skipped by decode({skipSpecialTokens: true}). */
  readonly specialTokenIds: ReadonlySet<number>;
  readonly decoding: TokenDecoding;
  private readonly encoder: TextEncoderModel;
  private readonly tokens: ReadonlyArray<string | undefined>;
  private readonly ids: ReadonlyMap<string, number>;
  private readonly templates: ChatTemplates | null;
  private readonly templateVariables: Record<string, string>;

  constructor(files: TokenizerFiles, directory = ".") {
    const tokenizerFile = join(directory, "tokenizer.json");
    const json = files.tokenizer as { model?: { vocab?: unknown }; added_tokens?: unknown; decoder?: unknown };
    if (!json || typeof json !== "object" || !json.model || typeof json.model !== "object") {
      throw new TokenizerConfigError(`${tokenizerFile}: not a tokenizer.json (no "model" object)`);
    }
    const config = { ...(files.specialTokensMap ?? {}), ...(files.tokenizerConfig ?? {}) };
    try {
      this.encoder = new HfTokenizer(json, config);
    } catch (error) {
      throw new TokenizerConfigError(`${tokenizerFile}: ${oneLine((error as Error).message)}`);
    }

    const tokens: Array<string | undefined> = [];
    const vocab = json.model.vocab;
    if (Array.isArray(vocab)) {
      vocab.forEach((entry, id) => (tokens[id] = Array.isArray(entry) ? String(entry[0]) : String(entry)));
    } else if (vocab && typeof vocab === "object") {
      for (const [token, id] of Object.entries(vocab as Record<string, number>)) tokens[id] = token;
    }
    const special = new Set<number>();
    for (const added of Array.isArray(json.added_tokens) ? json.added_tokens : []) {
      const { id, content } = added as { id: number; content: string; special?: boolean };
      tokens[id] = content;
      if ((added as { special?: boolean }).special) special.add(id);
    }
    this.tokens = tokens;
    this.vocabSize = tokens.length;
    this.specialTokenIds = special;
    const ids = new Map<string, number>();
    tokens.forEach((token, id) => token !== undefined && !ids.has(token) && ids.set(token, id));
    this.ids = ids;
    this.decoding = buildTokenDecoding(tokens, json.decoder ?? null, tokenizerFile);

    const generation = files.generationConfig ?? {};
    const bos = tokenContent(config.bos_token);
    this.bosTokenId = (bos !== null ? ids.get(bos) : undefined) ?? idList(generation.bos_token_id)[0] ?? null;
    const eos = new Set(idList(generation.eos_token_id));
    const eosToken = tokenContent(config.eos_token);
    if (eosToken !== null && ids.has(eosToken)) eos.add(ids.get(eosToken)!);
    for (const token of END_OF_TURN_TOKENS) if (ids.has(token)) eos.add(ids.get(token)!);
    this.eosTokenIds = eos;

    // The *_token entries of the config are template variables (bos_token, eos_token, ...), as in transformers.
    this.templateVariables = {};
    for (const [key, value] of Object.entries(config)) {
      const content = tokenContent(value);
      if (key.endsWith("_token") && content !== null) this.templateVariables[key] = content;
    }
    this.templates = readChatTemplates(files, directory);
  }

  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokens[id];
  }

  /** The raw bytes a token stands for (byte-level bytes, a fallback byte, or its text with "▁" as " "). */
  tokenBytes(id: number): Uint8Array {
    return this.decoding.bytes(id);
  }

  encode(text: string, { addSpecialTokens = true }: { addSpecialTokens?: boolean } = {}): number[] {
    return this.encoder.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Text for `ids` exactly as the Rust tokenizers library decodes them; ids with no token are skipped. */
  decode(ids: readonly number[], { skipSpecialTokens = false }: { skipSpecialTokens?: boolean } = {}): string {
    const kept = ids.filter(
      (id) => this.tokens[id] !== undefined && !(skipSpecialTokens && this.specialTokenIds.has(id)),
    );
    const decoding = this.decoding;
    if (decoding.kind === "byte-level") {
      const parts = kept.map((id) => decoding.bytes(id));
      const all = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
      let offset = 0;
      for (const part of parts) {
        all.set(part, offset);
        offset += part.length;
      }
      return new TextDecoder("utf-8", { ignoreBOM: true }).decode(all);
    }
    let text = "";
    let run: number[] = []; // consecutive byte-fallback tokens, decoded together
    for (let index = 0; index < kept.length; index++) {
      const byte = decoding.fallbackByte(kept[index]!);
      if (byte >= 0) {
        run.push(byte);
        continue;
      }
      if (run.length > 0) {
        text += decodeFallbackRun(run);
        run = [];
      }
      text += decoding.text(kept[index]!, index === 0)!;
    }
    if (run.length > 0) text += decodeFallbackRun(run);
    const rule = decoding.leadingSpace;
    return rule.kind === "strip-text" ? stripLeadingSpaces(text, rule.count).text : text;
  }

  get hasChatTemplate(): boolean {
    return this.templates !== null;
  }

  /** The chat template's Jinja source (all named templates, joined); null when the model has none. */
  get chatTemplateText(): string | null {
    return this.templates?.text ?? null;
  }

  /** The prompt text for `messages`, rendered as transformers' apply_chat_template(tokenize=False) renders it. */
  applyChatTemplate(messages: readonly ChatTemplateMessage[], options: ChatTemplateOptions = {}): string {
    if (!this.templates) {
      throw new ChatTemplateError(
        "the model has no chat template (looked for chat_template.jinja, tokenizer_config.json chat_template and chat_template.json)",
      );
    }
    const { byName, source } = this.templates;
    if (messages.length === 0) throw new ChatTemplateError(`${source}: cannot render an empty conversation`);
    const name = options.tools !== undefined && byName.has("tool_use") ? "tool_use" : "default";
    const template = byName.get(name);
    if (!template) {
      throw new ChatTemplateError(`${source}: no "default" chat template among ${[...byName.keys()].join(", ")}`);
    }
    try {
      return template.render({
        ...this.templateVariables,
        ...options.extra,
        messages: messages.map(templateMessage),
        tools: options.tools ?? null,
        documents: null,
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (error) {
      throw new ChatTemplateError(`${source}: chat template failed to render: ${oneLine((error as Error).message)}`);
    }
  }

  /**
   * The prompt's token ids. Like transformers' apply_chat_template(tokenize=True) this encodes without
   * adding special tokens: a template that starts with bos_token already has its BOS.
   */
  renderAndEncode(messages: readonly ChatTemplateMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }
}

/**
 * A message as transformers hands it to the template: fields set to null dropped (templates test for
 * missing fields, not null ones), and reasoning under any of its names visible as reasoning_content and
 * thinking.
 */
function templateMessage(message: ChatTemplateMessage): Record<string, unknown> {
  const plain = Object.fromEntries(
    Object.entries(message).filter(([, value]) => value !== null && value !== undefined),
  );
  const field = REASONING_FIELDS.find((name) => plain[name] !== undefined);
  if (field === undefined) return plain;
  return { thinking: plain[field], ...plain, reasoning_content: plain[field] };
}

function readChatTemplates(files: TokenizerFiles, directory: string): ChatTemplates | null {
  let raw: unknown;
  let source: string;
  if (files.chatTemplateJinja !== undefined) {
    [raw, source] = [files.chatTemplateJinja, join(directory, "chat_template.jinja")];
  } else if (files.tokenizerConfig?.chat_template !== undefined && files.tokenizerConfig.chat_template !== null) {
    [raw, source] = [files.tokenizerConfig.chat_template, join(directory, "tokenizer_config.json")];
  } else if (files.chatTemplateJson?.chat_template !== undefined) {
    [raw, source] = [files.chatTemplateJson.chat_template, join(directory, "chat_template.json")];
  } else {
    return null;
  }
  const named: Array<[string, unknown]> =
    typeof raw === "string"
      ? [["default", raw]]
      : Array.isArray(raw)
        ? raw.map((entry: { name?: unknown; template?: unknown }) => [String(entry?.name), entry?.template])
        : [];
  if (named.length === 0 || named.some(([, template]) => typeof template !== "string")) {
    throw new TokenizerConfigError(`${source}: chat_template must be a string or a list of {name, template} strings`);
  }
  const byName = new Map<string, Template>();
  for (const [name, template] of named) {
    try {
      byName.set(name, new Template(template as string));
    } catch (error) {
      throw new TokenizerConfigError(
        `${source}: chat template "${name}" does not parse: ${oneLine((error as Error).message)}`,
      );
    }
  }
  return { byName, source, text: named.map(([, template]) => template as string).join("\n") };
}

async function readJson(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : (error as Error).message;
    throw new TokenizerConfigError(`${path}: ${reason}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not a JSON object");
    return value as Record<string, unknown>;
  } catch (error) {
    throw new TokenizerConfigError(`${path}: invalid JSON (${oneLine((error as Error).message)})`);
  }
}

async function readOptionalText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new TokenizerConfigError(`${path}: ${(error as Error).message}`);
  }
}

/** Loads the tokenizer of a model directory (see the file comment for what is read). */
export async function loadTokenizer(directory: string): Promise<ModelTokenizer> {
  const [tokenizer, tokenizerConfig, specialTokensMap, generationConfig, chatTemplateJinja, chatTemplateJson] =
    await Promise.all([
      readJson(join(directory, "tokenizer.json"), true),
      readJson(join(directory, "tokenizer_config.json"), false),
      readJson(join(directory, "special_tokens_map.json"), false),
      readJson(join(directory, "generation_config.json"), false),
      readOptionalText(join(directory, "chat_template.jinja")),
      readJson(join(directory, "chat_template.json"), false),
    ]);
  return new ModelTokenizer(
    { tokenizer, tokenizerConfig, specialTokensMap, generationConfig, chatTemplateJinja, chatTemplateJson },
    directory,
  );
}
