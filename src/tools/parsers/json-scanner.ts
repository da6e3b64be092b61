/**
 * Incremental readers shared by the tool-call parsers. They take one UTF-16 code unit at a time, so a
 * call can be read as the model writes it, and say after each unit whether the construct needs more,
 * is complete, or cannot be what it started to look like.
 *
 * JsonScanner validates one JSON value and writes it back as compact JSON as it goes: whitespace
 * outside strings is dropped, strings and numbers are written the way JSON.stringify writes them. What
 * it has written is always a prefix of valid JSON that `closing()` can complete, because the pieces that
 * could leave it dangling (an object key, the comma before the next element, a number or literal not
 * yet finished) are written only once they are whole.
 */

import type { ReadStep } from "./types.js";

/** more: needs more input; done: complete with this unit; doneBefore: complete before this unit; fail: not valid. */
export type Step = "more" | "done" | "doneBefore" | "fail";

export function isSpace(unit: string): boolean {
  return unit === " " || unit === "\n" || unit === "\t" || unit === "\r";
}

/** Encodes string content one code unit at a time as JSON.stringify would, keeping surrogate pairs whole. */
export class StringEncoder {
  private high = "";

  encode(unit: string): string {
    const code = unit.charCodeAt(0);
    if (this.high) {
      const high = this.high;
      this.high = "";
      if (code >= 0xdc00 && code <= 0xdfff) return stringBody(high + unit);
      return stringBody(high) + this.encode(unit);
    }
    if (code >= 0xd800 && code <= 0xdbff) {
      this.high = unit;
      return "";
    }
    return stringBody(unit);
  }

  /** A high surrogate still waiting for its pair, written as an escape (as JSON.stringify writes a lone one). */
  flush(): string {
    const high = this.high;
    this.high = "";
    return high ? stringBody(high) : "";
  }
}

function stringBody(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

/** Matches a fixed piece of markup unit by unit. */
export class LiteralMatcher {
  private matched = 0;

  constructor(readonly literal: string) {}

  get started(): boolean {
    return this.matched > 0;
  }

  feed(unit: string): ReadStep {
    if (this.literal[this.matched] !== unit) return "fail";
    this.matched += 1;
    return this.matched === this.literal.length ? "done" : "more";
  }
}

const NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const NUMBER_UNIT = /^[-+.eE0-9]$/;
const HEX_UNIT = /^[0-9a-fA-F]$/;
const ESCAPES: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
const LITERALS: Record<string, string> = { t: "true", f: "false", n: "null" };

type ScannerState =
  "value" | "firstElement" | "firstKey" | "key" | "colon" | "afterValue" | "string" | "number" | "literal";

export class JsonScanner {
  private output = "";
  private written = false;
  private readonly stack: Array<"{" | "["> = [];
  private state: ScannerState = "value";
  /** A comma was read; it is written with the next element. */
  private pendingComma = false;
  /** `"key":` is written and its value is not yet. */
  private keyOpen = false;
  private inKey = false;
  private key = "";
  private escape: "none" | "backslash" | "unicode" = "none";
  private hex = "";
  /** The number or literal read so far. */
  private token = "";
  private literal = "";
  private readonly strings = new StringEncoder();

  /** objectOnly: the value must be an object (tool-call arguments). */
  constructor(private readonly objectOnly = false) {}

  /** The compact JSON written since the last call. */
  take(): string {
    const output = this.output;
    this.output = "";
    return output;
  }

  feed(unit: string): Step {
    switch (this.state) {
      case "value":
        return this.value(unit);
      case "firstElement":
        return unit === "]" ? this.close() : this.value(unit);
      case "firstKey":
        return unit === "}" ? this.close() : this.keyStart(unit);
      case "key":
        return this.keyStart(unit);
      case "colon":
        if (isSpace(unit)) return "more";
        if (unit !== ":") return "fail";
        this.write(`${JSON.stringify(this.key)}:`);
        this.keyOpen = true;
        this.state = "value";
        return "more";
      case "afterValue":
        return this.afterValue(unit);
      case "string":
        return this.stringUnit(unit);
      case "number":
        if (NUMBER_UNIT.test(unit)) {
          this.token += unit;
          return "more";
        }
        if (!NUMBER.test(this.token)) return "fail";
        this.write(JSON.stringify(Number(this.token)));
        return this.valueEnded() === "done" ? "doneBefore" : this.feed(unit);
      case "literal":
        this.token += unit;
        if (!this.literal.startsWith(this.token)) return "fail";
        if (this.token !== this.literal) return "more";
        this.write(this.literal);
        return this.valueEnded();
    }
  }

  /** JSON that completes what has been written: an unfinished string is closed, an owed value is null. */
  closing(): string {
    let closing = "";
    if (this.state === "string" && !this.inKey) closing += `${this.strings.flush()}"`;
    else if (this.state === "number" && NUMBER.test(this.token))
      closing += (this.pendingComma ? "," : "") + JSON.stringify(Number(this.token));
    else if (this.keyOpen || !this.written) closing += "null";
    for (let depth = this.stack.length - 1; depth >= 0; depth -= 1) closing += this.stack[depth] === "{" ? "}" : "]";
    return closing;
  }

  private write(text: string): void {
    this.output += (this.pendingComma ? "," : "") + text;
    this.pendingComma = false;
    this.keyOpen = false;
    this.written = true;
  }

  private value(unit: string): Step {
    if (isSpace(unit)) return "more";
    if (this.objectOnly && !this.written && unit !== "{") return "fail";
    if (unit === "{" || unit === "[") {
      this.write(unit);
      this.stack.push(unit);
      this.state = unit === "{" ? "firstKey" : "firstElement";
      return "more";
    }
    if (unit === '"') {
      this.write('"');
      this.inKey = false;
      this.state = "string";
      return "more";
    }
    if (unit === "-" || (unit >= "0" && unit <= "9")) {
      this.token = unit;
      this.state = "number";
      return "more";
    }
    const literal = LITERALS[unit];
    if (literal === undefined) return "fail";
    this.token = unit;
    this.literal = literal;
    this.state = "literal";
    return "more";
  }

  private keyStart(unit: string): Step {
    if (isSpace(unit)) return "more";
    if (unit !== '"') return "fail";
    this.inKey = true;
    this.key = "";
    this.state = "string";
    return "more";
  }

  private afterValue(unit: string): Step {
    if (isSpace(unit)) return "more";
    const top = this.stack[this.stack.length - 1];
    if (unit === ",") {
      this.pendingComma = true;
      this.state = top === "{" ? "key" : "value";
      return "more";
    }
    if ((unit === "}" && top === "{") || (unit === "]" && top === "[")) return this.close();
    return "fail";
  }

  private close(): Step {
    const container = this.stack.pop();
    this.write(container === "{" ? "}" : "]");
    return this.valueEnded();
  }

  private valueEnded(): Step {
    if (this.stack.length === 0) return "done";
    this.state = "afterValue";
    return "more";
  }

  private stringUnit(unit: string): Step {
    if (this.escape === "backslash") {
      if (unit === "u") {
        this.escape = "unicode";
        this.hex = "";
        return "more";
      }
      const decoded = ESCAPES[unit];
      if (decoded === undefined) return "fail";
      this.escape = "none";
      return this.content(decoded);
    }
    if (this.escape === "unicode") {
      if (!HEX_UNIT.test(unit)) return "fail";
      this.hex += unit;
      if (this.hex.length < 4) return "more";
      this.escape = "none";
      return this.content(String.fromCharCode(parseInt(this.hex, 16)));
    }
    if (unit === "\\") {
      this.escape = "backslash";
      return "more";
    }
    if (unit === '"') {
      if (this.inKey) {
        this.state = "colon";
        return "more";
      }
      this.output += `${this.strings.flush()}"`;
      return this.valueEnded();
    }
    if (unit < " ") return "fail";
    return this.content(unit);
  }

  private content(unit: string): Step {
    if (this.inKey) this.key += unit;
    else this.output += this.strings.encode(unit);
    return "more";
  }
}
