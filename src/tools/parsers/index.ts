/**
 * Streaming tool-call parsers: a model's generated text, in whatever pieces it arrives, becomes text
 * and tool-call events while it is generated, without tool-call markup leaking into the text. One
 * reader per format (hermes.ts, qwen3-coder.ts, llama3-json.ts, gemma-pythonic.ts) over one streaming
 * core (stream-parser.ts, which documents the rules for text, auto mode and streaming mode).
 */
import { gemmaPythonicRules } from "./gemma-pythonic.js";
import { hermesRules } from "./hermes.js";
import { llama3JsonRules } from "./llama3-json.js";
import { qwen3CoderRules } from "./qwen3-coder.js";
import { StreamingToolCallParser } from "./stream-parser.js";
import type { FormatRules, ToolCallFormat, ToolCallParser, ToolCallParserOptions } from "./types.js";

export type { ToolCallFormat, ToolCallParser, ToolCallParserOptions, ToolParseEvent, ToolSpec } from "./types.js";

export function createToolCallParser(format: ToolCallFormat, options: ToolCallParserOptions): ToolCallParser {
  return new StreamingToolCallParser(formatRules(format, options), options);
}

function formatRules(format: ToolCallFormat, options: ToolCallParserOptions): FormatRules {
  switch (format) {
    case "hermes":
      return hermesRules();
    case "qwen3_coder":
      return qwen3CoderRules(options.tools);
    case "llama3_json":
      return llama3JsonRules();
    case "gemma_pythonic":
      return gemmaPythonicRules();
  }
}

/**
 * Which format a model family / chat template uses (model_type from config.json, and the template
 * source); null when none. What the template writes for past calls decides first, since fine-tunes
 * change formats within a family (Hermes 3 is a Llama with `<tool_call>`); without a template the
 * family decides. Gemma 3's template has no tools at all, so Gemma 3 always gets our documented
 * convention unless its template writes another format.
 */
export function toolCallFormatFor(modelType: string, chatTemplate: string | null): ToolCallFormat | null {
  if (chatTemplate !== null) {
    if (chatTemplate.includes("<function=") && chatTemplate.includes("<parameter=")) return "qwen3_coder";
    if (chatTemplate.includes("<tool_call>")) return "hermes";
    if (
      chatTemplate.includes("<|start_header_id|>") &&
      (chatTemplate.includes("<|python_tag|>") || chatTemplate.includes('"parameters"'))
    )
      return "llama3_json";
  }
  if (modelType === "gemma3" || modelType === "gemma3_text") return "gemma_pythonic";
  if (chatTemplate !== null) return null;
  if (modelType === "llama") return "llama3_json";
  if (/^qwen(2|3)(_moe)?$/.test(modelType)) return "hermes";
  return null;
}
