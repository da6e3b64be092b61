/**
 * One call written as a JSON object, `{"name": "...", "arguments": {...}}` (Hermes, Qwen) or
 * `{"name": "...", "parameters": {...}}` (Llama 3.x). Read incrementally, so the name is known as soon
 * as its string closes and the arguments come out as compact JSON while they are being written.
 */
import { isSpace, JsonScanner } from "./json-scanner.js";
import type { DraftCall, ReadStep } from "./types.js";

const ARGUMENT_KEYS = new Set(["arguments", "parameters"]);

type ObjectState = "open" | "firstKey" | "key" | "colon" | "value" | "afterValue" | "nextKey";

export class JsonCallReader {
  readonly draft: DraftCall = { name: null, args: "", complete: false };
  private state: ObjectState = "open";
  private scanner = new JsonScanner();
  private key = "";
  private nameJson = "";
  private readonly seen = new Set<string>();

  /** otherKeys: keys tolerated besides the name and the arguments (their values are read and dropped). */
  constructor(private readonly otherKeys: ReadonlySet<string> | "any") {}

  /** Leading whitespace is skipped; "done" comes with the object's closing brace. */
  feed(unit: string): ReadStep {
    switch (this.state) {
      case "open":
        if (isSpace(unit)) return "more";
        if (unit !== "{") return "fail";
        this.state = "firstKey";
        return "more";
      case "firstKey":
      case "nextKey":
        if (isSpace(unit)) return "more";
        if (unit !== '"') return "fail";
        this.scanner = new JsonScanner();
        this.state = "key";
        this.scanner.feed(unit);
        return "more";
      case "key":
        return this.readKey(unit);
      case "colon":
        if (isSpace(unit)) return "more";
        if (unit !== ":") return "fail";
        this.scanner = new JsonScanner(ARGUMENT_KEYS.has(this.key));
        this.state = "value";
        return "more";
      case "value":
        return this.readValue(unit);
      case "afterValue":
        if (isSpace(unit)) return "more";
        if (unit === ",") {
          this.state = "nextKey";
          return "more";
        }
        if (unit !== "}" || this.draft.name === null) return "fail";
        if (this.draft.args === "") this.draft.args = "{}";
        this.draft.complete = true;
        return "done";
    }
  }

  /** JSON completing the arguments read so far (see CallReader.closeArguments). */
  closeArguments(): string {
    if (this.draft.complete) return "";
    if (this.draft.args === "") return "{}";
    return this.state === "value" && ARGUMENT_KEYS.has(this.key) ? this.scanner.closing() : "";
  }

  private readKey(unit: string): ReadStep {
    const step = this.scanner.feed(unit);
    if (step !== "done") return step === "fail" ? "fail" : "more";
    this.key = JSON.parse(this.scanner.take()) as string;
    const known = this.key === "name" || ARGUMENT_KEYS.has(this.key);
    if (!known && this.otherKeys !== "any" && !this.otherKeys.has(this.key)) return "fail";
    // One name and one set of arguments ("arguments" and "parameters" are the same thing).
    const slot = ARGUMENT_KEYS.has(this.key) ? "arguments" : this.key;
    if (this.seen.has(slot)) return "fail";
    this.seen.add(slot);
    this.state = "colon";
    return "more";
  }

  private readValue(unit: string): ReadStep {
    const step = this.scanner.feed(unit);
    if (step === "fail") return "fail";
    if (ARGUMENT_KEYS.has(this.key)) this.draft.args += this.scanner.take();
    else if (this.key === "name") this.nameJson += this.scanner.take();
    if (step === "more") return "more";
    if (this.key === "name") {
      const name: unknown = JSON.parse(this.nameJson);
      if (typeof name !== "string" || name === "") return "fail";
      this.draft.name = name;
    }
    this.state = "afterValue";
    return step === "doneBefore" ? this.feed(unit) : "more";
  }
}
