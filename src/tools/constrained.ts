/**
 * What constrained decoding makes the model write, as grammars: for tool_choice any/required or a
 * named tool, one call in the model family's own call syntax (the text its chat template renders for
 * past calls, so the output reads as the model was trained to write it) whose arguments are valid for
 * the tool's schema; for OpenAI's response_format, a JSON value. Then end-of-turn.
 */
import type { TokenConstraint } from "../engine/events.js";
import type { ToolCallFormat } from "./parsers/index.js";
import { isJsonParameter } from "./parsers/qwen3-coder.js";
import {
  ANNOTATION_KEYWORDS,
  createMatcher,
  GrammarError,
  UnsupportedSchemaError,
  type CompiledGrammar,
  type GrammarMatcher,
  type GrammarNode,
  type TokenVocabulary,
} from "./grammar/index.js";

export interface ConstrainedTool {
  name: string;
  parameters: Record<string, unknown>;
}

const literal = (text: string): GrammarNode => ({ kind: "literal", text });
const json = (schema: Record<string, unknown> | true): GrammarNode => ({
  kind: "json",
  schema: schema === true ? true : (withIntegerRanges(schema) as Record<string, unknown>),
});

/** Integer ranges up to this many values are enforced by listing them; wider bounds stay unsupported. */
const MAX_ENUMERATED_RANGE = 1000;

/**
 * Tool schemas often bound integers (`days`: 1..7). The grammar cannot compare numbers, but a small
 * integer range is the same constraint as the list of its values, which it can enforce: such schemas
 * are rewritten that way (anything else with minimum / maximum is refused by the grammar, by name).
 */
function withIntegerRanges(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withIntegerRanges);
  if (!schema || typeof schema !== "object") return schema;
  const node = Object.fromEntries(
    Object.entries(schema as Record<string, unknown>).map(([key, value]) => [
      key,
      key === "enum" || key === "const" || key === "default" || key === "examples" ? value : withIntegerRanges(value),
    ]),
  );
  const { type, minimum, maximum, exclusiveMinimum, exclusiveMaximum, ...rest } = node;
  if (type !== "integer") return node;
  const low = Math.max(
    typeof minimum === "number" ? Math.ceil(minimum) : -Infinity,
    typeof exclusiveMinimum === "number" ? Math.floor(exclusiveMinimum) + 1 : -Infinity,
  );
  const high = Math.min(
    typeof maximum === "number" ? Math.floor(maximum) : Infinity,
    typeof exclusiveMaximum === "number" ? Math.ceil(exclusiveMaximum) - 1 : Infinity,
  );
  if (!Number.isFinite(low) || !Number.isFinite(high) || high < low || high - low >= MAX_ENUMERATED_RANGE) return node;
  return { ...rest, enum: Array.from({ length: high - low + 1 }, (_, index) => low + index) };
}
const sequence = (...items: GrammarNode[]): GrammarNode => ({ kind: "sequence", items });

/** Gemma's pythonic call: `name(a=<json>, b=<json>)` over the schema's required properties, in order. */
function pythonicCall(tool: ConstrainedTool): GrammarNode {
  const items: GrammarNode[] = [literal(`${tool.name}(`)];
  requiredProperties(tool).forEach(([name, schema], index) => {
    items.push(literal(`${index > 0 ? ", " : ""}${name}=`), json(schema));
  });
  items.push(literal(")"));
  return sequence(...items);
}

/** Keywords a raw text value can enforce besides annotations; others are refused by name. */
const TEXT_KEYWORDS = new Set(["type", "minLength", "maxLength", "enum", "const", "nullable"]);

/**
 * A Qwen3-Coder parameter value as its parser reads it: JSON when the schema allows only non-string
 * types, raw text otherwise. Text cannot contain `<`, so it cannot close its tag early (the parser
 * would end the value at `</parameter>`); an enum or const of strings is one of its members verbatim.
 * (A string inside a JSON object or array value is not kept from containing `</parameter>`.)
 */
function xmlValue(schema: Record<string, unknown>): GrammarNode {
  if (isJsonParameter(schema)) return json(schema);
  for (const keyword of Object.keys(schema)) {
    if (!TEXT_KEYWORDS.has(keyword) && !ANNOTATION_KEYWORDS.has(keyword)) {
      throw new UnsupportedSchemaError(keyword, "not for a parameter written as raw text");
    }
  }
  const listed = "const" in schema ? [schema.const] : Array.isArray(schema.enum) ? (schema.enum as unknown[]) : null;
  if (listed !== null) {
    const texts = listed.filter((value): value is string => typeof value === "string");
    if (texts.length === 0) throw new GrammarError("a parameter written as raw text needs string enum values");
    return { kind: "choice", options: texts.map(literal) };
  }
  const bound = (keyword: string) => {
    const value = schema[keyword];
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw new GrammarError(`${keyword} must be a non-negative integer`);
    }
    return value;
  };
  return { kind: "text", exclude: "<", minLength: bound("minLength"), maxLength: bound("maxLength") };
}

/** Qwen3-Coder's call body over the schema's required properties, in order, each value on its own lines. */
function xmlCall(tool: ConstrainedTool): GrammarNode {
  const items: GrammarNode[] = [literal(`<function=${tool.name}>\n`)];
  for (const [name, schema] of requiredProperties(tool)) {
    items.push(literal(`<parameter=${name}>\n`), xmlValue(schema), literal("\n</parameter>\n"));
  }
  items.push(literal("</function>"));
  return sequence(...items);
}

function requiredProperties(tool: ConstrainedTool): Array<[string, Record<string, unknown>]> {
  const properties = (tool.parameters.properties ?? {}) as Record<string, Record<string, unknown>>;
  const required = new Set(Array.isArray(tool.parameters.required) ? (tool.parameters.required as string[]) : []);
  return Object.entries(properties).filter(([name]) => required.has(name));
}

function oneCall(format: ToolCallFormat, tool: ConstrainedTool): GrammarNode {
  switch (format) {
    case "hermes":
      return sequence(
        literal(`<tool_call>\n{"name": ${JSON.stringify(tool.name)}, "arguments": `),
        json(tool.parameters),
        literal("}\n</tool_call>"),
      );
    case "llama3_json":
      return sequence(
        literal(`{"name": ${JSON.stringify(tool.name)}, "parameters": `),
        json(tool.parameters),
        literal("}"),
      );
    case "gemma_pythonic":
      return sequence(literal("["), pythonicCall(tool), literal("]"));
    case "qwen3_coder":
      return sequence(literal("<tool_call>\n"), xmlCall(tool), literal("\n</tool_call>"));
  }
}

/** One call of one of `tools` (all of them for any/required, the named one otherwise). */
export function toolCallGrammar(format: ToolCallFormat, tools: readonly ConstrainedTool[]): GrammarNode {
  const options = tools.map((tool) => oneCall(format, tool));
  return options.length === 1 ? options[0]! : { kind: "choice", options };
}

export function jsonGrammar(schema: Record<string, unknown> | true): GrammarNode {
  return json(schema);
}

/** The grammar as the engine's constraint: end-of-turn tokens close it once the grammar is complete. */
export function grammarConstraint(
  grammar: CompiledGrammar,
  vocabulary: TokenVocabulary,
  endTokenIds: readonly number[],
): TokenConstraint {
  // The matcher itself allows end-of-turn tokens only once the grammar is complete, and accepts them.
  const matcher: GrammarMatcher = createMatcher(grammar, vocabulary, endTokenIds);
  return { mask: () => matcher.mask(), accept: (token) => matcher.accept(token) };
}
