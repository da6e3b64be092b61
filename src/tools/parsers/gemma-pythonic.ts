/**
 * Gemma 3, by the convention our Gemma chat template documents (its own template has no tools): the
 * calls are one Python-style list, `[name(a=1, b="x"), other(c=[1, 2])]`, each value a JSON literal as
 * the template's `tojson` writes it; the list may follow text. Python's own literals (`True`, `None`,
 * single quotes) are not JSON and make the list text. Any `[` may open a list; prose such as `[1]`,
 * `[link](url)` or `[f(x)]` fails within a few units and comes out as text. A list is one block: in
 * auto mode all its calls are emitted or, if one is broken or unknown, the whole list is text.
 */
import { isSpace, JsonScanner } from "./json-scanner.js";
import type { CallReader, DraftCall, FormatRules, ReadStep } from "./types.js";

const NAME_UNIT = /^[A-Za-z0-9_.:$-]$/;
const MAX_NAME = 128;

type ListState =
  | "open"
  | "listStart"
  | "nextCall"
  | "name"
  | "afterName"
  | "argsStart"
  | "key"
  | "afterKey"
  | "value"
  | "afterValue"
  | "nextArg"
  | "afterCall";

class GemmaListReader implements CallReader {
  readonly drafts: DraftCall[] = [];
  private state: ListState = "open";
  private word = "";
  private keys = new Set<string>();
  private scanner = new JsonScanner();
  /** Units read so far, and where the call being read began. */
  private position = 0;
  private callStart = 0;

  feed(unit: string): ReadStep {
    this.position += 1;
    return this.step(unit);
  }

  private step(unit: string): ReadStep {
    switch (this.state) {
      case "open":
        if (unit !== "[") return "fail";
        this.state = "listStart";
        return "more";
      case "listStart":
      case "nextCall":
        if (isSpace(unit)) return "more";
        this.callStart = this.position - 1;
        return this.beginWord(unit, "name");
      case "name":
      case "key":
        if (NAME_UNIT.test(unit)) {
          this.word += unit;
          return this.word.length > MAX_NAME ? "fail" : "more";
        }
        this.state = this.state === "name" ? "afterName" : "afterKey";
        return this.step(unit);
      case "afterName":
        if (isSpace(unit)) return "more";
        if (unit !== "(") return "fail";
        this.drafts.push({ name: this.word, args: "{", complete: false, start: this.callStart });
        this.keys = new Set();
        this.state = "argsStart";
        return "more";
      case "argsStart":
      case "nextArg":
        if (isSpace(unit)) return "more";
        // `f()` has no arguments; `f(a=1,)` is valid Python.
        if (unit === ")") return this.endCall();
        return this.beginWord(unit, "key");
      case "afterKey":
        if (isSpace(unit)) return "more";
        if (unit !== "=" || this.keys.has(this.word)) return "fail";
        this.keys.add(this.word);
        this.draft.args += `${this.keys.size > 1 ? "," : ""}${JSON.stringify(this.word)}:`;
        this.scanner = new JsonScanner();
        this.state = "value";
        return "more";
      case "value": {
        const step = this.scanner.feed(unit);
        if (step === "fail") return "fail";
        this.draft.args += this.scanner.take();
        if (step === "more") return "more";
        this.state = "afterValue";
        return step === "doneBefore" ? this.step(unit) : "more";
      }
      case "afterValue":
        if (isSpace(unit)) return "more";
        if (unit === ",") {
          this.state = "nextArg";
          return "more";
        }
        return unit === ")" ? this.endCall() : "fail";
      case "afterCall":
        if (isSpace(unit)) return "more";
        if (unit === ",") {
          this.state = "nextCall";
          return "more";
        }
        return unit === "]" ? "done" : "fail";
    }
  }

  /** A list whose closing `]` is missing still counts once its last call is whole. */
  completeAtEnd(): boolean {
    return this.state === "afterCall";
  }

  closeArguments(): string {
    const draft = this.drafts[this.drafts.length - 1];
    if (!draft || draft.complete) return "";
    return (this.state === "value" ? this.scanner.closing() : "") + "}";
  }

  private get draft(): DraftCall {
    return this.drafts[this.drafts.length - 1]!;
  }

  private beginWord(unit: string, state: "name" | "key"): ReadStep {
    if (!NAME_UNIT.test(unit)) return "fail";
    this.word = unit;
    this.state = state;
    return "more";
  }

  private endCall(): ReadStep {
    this.draft.args += "}";
    this.draft.complete = true;
    this.state = "afterCall";
    return "more";
  }
}

export function gemmaPythonicRules(): FormatRules {
  return {
    startsCall: (unit) => unit === "[",
    newReader: () => new GemmaListReader(),
    isSeparator: isSpace,
    callsOnlyAtStart: false,
  };
}
