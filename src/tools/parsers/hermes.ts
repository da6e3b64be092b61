/**
 * Hermes / Qwen2.5 / Qwen3: each call is a JSON object inside its own tag,
 * `<tool_call>\n{"name": "...", "arguments": {...}}\n</tool_call>`, as the Qwen templates render past
 * calls. The object is read as JSON (not cut at the next `</tool_call>`), so an argument string may
 * contain the tags themselves. Keys other than the name and the arguments are tolerated and dropped.
 */
import { isSpace } from "./json-scanner.js";
import { JsonCallReader } from "./json-call.js";
import { startsTag, TaggedCallReader } from "./tagged.js";
import type { FormatRules } from "./types.js";

export function hermesRules(): FormatRules {
  return {
    startsCall: startsTag,
    newReader: () => new TaggedCallReader(new JsonCallReader("any")),
    isSeparator: isSpace,
    callsOnlyAtStart: false,
  };
}
