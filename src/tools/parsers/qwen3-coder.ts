/**
 * Qwen3-Coder's XML-style calls:
 *   <tool_call>\n<function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>\n...</function>\n</tool_call>
 * A value is the raw text between the tags, less the one newline its template puts on each side. It is
 * a string unless the tool's schema gives the parameter only non-string types (number, integer,
 * boolean, object, array, null): then it is read as JSON, and kept as a string if it is not JSON. String
 * values stream unit by unit; the others come out whole when their closing tag is read.
 */
import { isSpace, LiteralMatcher, StringEncoder } from "./json-scanner.js";
import { startsTag, TaggedCallReader, type CallBodyReader } from "./tagged.js";
import type { DraftCall, FormatRules, ReadStep, ToolSpec } from "./types.js";

const FUNCTION_OPEN = "<function=";
const FUNCTION_CLOSE = "</function>";
const PARAMETER_OPEN = "<parameter=";
const VALUE_END = "</parameter>";
const VALUE_END_AFTER_NEWLINE = "\n</parameter>";
const MAX_NAME = 128;

type BodyState = "start" | "functionTag" | "name" | "body" | "tag" | "key" | "value";

/** Parameters whose values are JSON rather than strings, by tool. */
type JsonParameters = ReadonlyMap<string, ReadonlySet<string>>;

class Qwen3CoderBodyReader implements CallBodyReader {
  readonly draft: DraftCall = { name: null, args: "", complete: false };
  private state: BodyState = "start";
  private functionTag = new LiteralMatcher(FUNCTION_OPEN);
  /** The closing tags a `<` in the body may begin, and how much of them is matched. */
  private tag = "";
  private word = "";
  private readonly keys = new Set<string>();
  private asJson = false;
  private firstValueUnit = true;
  /** The end of the value read so far that may be its closing tag. */
  private held = "";
  private rawValue = "";
  private strings = new StringEncoder();

  constructor(private readonly jsonParameters: JsonParameters) {}

  feed(unit: string): ReadStep {
    switch (this.state) {
      case "start":
        if (isSpace(unit)) return "more";
        this.state = "functionTag";
        return this.feed(unit);
      case "functionTag": {
        const step = this.functionTag.feed(unit);
        if (step === "done") {
          this.state = "name";
          this.word = "";
          return "more";
        }
        return step;
      }
      case "name":
      case "key":
        return this.readWord(unit);
      case "body":
        if (isSpace(unit)) return "more";
        if (unit !== "<") return "fail";
        this.tag = unit;
        this.state = "tag";
        return "more";
      case "tag":
        this.tag += unit;
        if (this.tag === PARAMETER_OPEN) {
          this.word = "";
          this.state = "key";
          return "more";
        }
        if (this.tag === FUNCTION_CLOSE) {
          this.draft.args += "}";
          this.draft.complete = true;
          return "done";
        }
        return PARAMETER_OPEN.startsWith(this.tag) || FUNCTION_CLOSE.startsWith(this.tag) ? "more" : "fail";
      case "value":
        return this.readValue(unit);
    }
  }

  closeArguments(): string {
    if (this.draft.complete) return "";
    if (this.draft.args === "") return "{}";
    if (this.state !== "value" || this.asJson) return "}";
    // Cut off inside a string value: what was held back is part of it after all.
    let rest = "";
    for (const unit of this.held) rest += this.strings.encode(unit);
    return `${rest}${this.strings.flush()}"}`;
  }

  private readWord(unit: string): ReadStep {
    if (unit !== ">") {
      if (unit === "<" || unit === "\n") return "fail";
      this.word += unit;
      return this.word.length > MAX_NAME ? "fail" : "more";
    }
    const word = this.word.trim();
    if (word === "") return "fail";
    if (this.state === "name") {
      this.draft.name = word;
      this.draft.args = "{";
      this.state = "body";
      return "more";
    }
    if (this.keys.has(word)) return "fail";
    this.keys.add(word);
    this.word = word;
    this.asJson = this.jsonParameters.get(this.draft.name!)?.has(word) ?? false;
    this.firstValueUnit = true;
    this.held = "";
    this.rawValue = "";
    this.strings = new StringEncoder();
    if (!this.asJson) this.draft.args += `${this.separator()}${JSON.stringify(word)}:"`;
    this.state = "value";
    return "more";
  }

  private separator(): string {
    return this.draft.args === "{" ? "" : ",";
  }

  private readValue(unit: string): ReadStep {
    if (this.firstValueUnit) {
      this.firstValueUnit = false;
      if (unit === "\n") return "more";
    }
    this.held += unit;
    while (this.held && !VALUE_END_AFTER_NEWLINE.startsWith(this.held) && !VALUE_END.startsWith(this.held)) {
      this.valueUnit(this.held[0]!);
      this.held = this.held.slice(1);
    }
    if (this.held !== VALUE_END && this.held !== VALUE_END_AFTER_NEWLINE) return "more";
    if (this.asJson) {
      this.draft.args += `${this.separator()}${JSON.stringify(this.word)}:${JSON.stringify(jsonOrString(this.rawValue))}`;
    } else {
      this.draft.args += `${this.strings.flush()}"`;
    }
    this.state = "body";
    return "more";
  }

  private valueUnit(unit: string): void {
    if (this.asJson) this.rawValue += unit;
    else this.draft.args += this.strings.encode(unit);
  }
}

function jsonOrString(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

/** The parameters of each tool whose schema allows only non-string types. */
function jsonParametersOf(tools: readonly ToolSpec[]): JsonParameters {
  const byTool = new Map<string, Set<string>>();
  for (const tool of tools) {
    const properties = tool.parameters.properties;
    if (typeof properties !== "object" || properties === null) continue;
    const keys = new Set<string>();
    for (const [key, schema] of Object.entries(properties as Record<string, unknown>)) {
      if (isJsonParameter(schema)) keys.add(key);
    }
    byTool.set(tool.name, keys);
  }
  return byTool;
}

/** Whether a parameter's value is read as JSON (its schema allows only non-string types) or as raw text. */
export function isJsonParameter(schema: unknown): boolean {
  const types = schemaTypes(schema);
  return types.size > 0 && !types.has("string");
}

/** The JSON types a schema names, directly or through anyOf / oneOf; empty when it names none. */
function schemaTypes(schema: unknown): Set<string> {
  const types = new Set<string>();
  if (typeof schema !== "object" || schema === null) return types;
  const { type, anyOf, oneOf } = schema as { type?: unknown; anyOf?: unknown; oneOf?: unknown };
  for (const name of Array.isArray(type) ? type : [type]) if (typeof name === "string") types.add(name);
  for (const branches of [anyOf, oneOf]) {
    if (!Array.isArray(branches)) continue;
    for (const branch of branches) {
      const branchTypes = schemaTypes(branch);
      // A branch that names no type (an enum, a $ref) could be anything, a string included.
      if (branchTypes.size === 0) types.add("string");
      for (const name of branchTypes) types.add(name);
    }
  }
  return types;
}

export function qwen3CoderRules(tools: readonly ToolSpec[]): FormatRules {
  const jsonParameters = jsonParametersOf(tools);
  return {
    startsCall: startsTag,
    newReader: () => new TaggedCallReader(new Qwen3CoderBodyReader(jsonParameters)),
    isSeparator: isSpace,
    callsOnlyAtStart: false,
  };
}
