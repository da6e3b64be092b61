/**
 * Llama 3.1 / 3.2 custom tool calls: the reply is `{"name": "...", "parameters": {...}}` (the template
 * renders past calls so; `"arguments"` is accepted too), optionally after `<|python_tag|>` when special
 * tokens are shown; several calls are separated by `;` or whitespace. Only the start of the reply (or
 * right after a call) can hold a call: a reply that begins with anything else is plain text, and
 * so is a JSON object with keys other than name, parameters/arguments and `type` (Llama 3.2 sometimes
 * writes `"type": "function"`). Built-in tools (`<|python_tag|>brave_search.call(...)`) are not read
 * as calls.
 */
import { isSpace, LiteralMatcher } from "./json-scanner.js";
import { JsonCallReader } from "./json-call.js";
import type { CallReader, FormatRules, ReadStep } from "./types.js";

export const PYTHON_TAG = "<|python_tag|>";
const OTHER_KEYS = new Set(["type"]);

class Llama3CallReader implements CallReader {
  private tag: LiteralMatcher | null = null;
  private inTag = true;
  private readonly body = new JsonCallReader(OTHER_KEYS);
  readonly drafts = [this.body.draft];

  feed(unit: string): ReadStep {
    if (this.inTag) {
      if (this.tag === null && unit !== "<") this.inTag = false;
      else {
        this.tag ??= new LiteralMatcher(PYTHON_TAG);
        const step = this.tag.feed(unit);
        if (step === "done") this.inTag = false;
        return step === "fail" ? "fail" : "more";
      }
    }
    return this.body.feed(unit);
  }

  completeAtEnd(): boolean {
    return false;
  }

  closeArguments(): string {
    return this.body.closeArguments();
  }
}

export function llama3JsonRules(): FormatRules {
  return {
    startsCall: (unit) => unit === "{" || unit === "<",
    newReader: () => new Llama3CallReader(),
    isSeparator: (unit) => unit === ";" || isSpace(unit),
    callsOnlyAtStart: true,
  };
}
