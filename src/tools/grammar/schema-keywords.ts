/**
 * What the schema compiler accepts, and the algebra it needs before compiling: the keyword tables
 * (annotations, handled keywords, keywords per type), keyword checks that name what they refuse, and
 * merging schemas (allOf, sibling keywords of $ref and anyOf branches).
 */
import { GrammarError, UnsupportedSchemaError } from "./errors.js";
import { GrammarSizeError } from "./nfa.js";

export type Schema = Record<string, unknown>;

/** Keywords that never constrain a value (or, for format, that JSON Schema treats as annotations). */
export const IGNORED = new Set([
  "description",
  "title",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "$defs",
  "definitions",
  "deprecated",
  "readOnly",
  "writeOnly",
  "format",
  "contentMediaType",
  "contentEncoding",
]);
const HANDLED = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "enum",
  "const",
  "items",
  "prefixItems",
  "additionalItems",
  "minItems",
  "maxItems",
  "uniqueItems",
  "anyOf",
  "oneOf",
  "allOf",
  "$ref",
  "nullable",
  "minLength",
  "maxLength",
]);
export const TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"] as const;
export type JsonType = (typeof TYPES)[number];
export const KEYWORDS_OF: Array<[JsonType, string[]]> = [
  ["object", ["properties", "required", "additionalProperties"]],
  ["array", ["items", "prefixItems", "additionalItems", "minItems", "maxItems"]],
  ["string", ["minLength", "maxLength"]],
];

export const isSchemaObject = (value: unknown): value is Schema =>
  value !== null && typeof value === "object" && !Array.isArray(value);

export function checkKeywords(schema: Schema): void {
  for (const [keyword, value] of Object.entries(schema)) {
    if (IGNORED.has(keyword)) continue;
    if (!HANDLED.has(keyword)) throw new UnsupportedSchemaError(keyword);
    if (keyword === "uniqueItems" && value !== false) throw new UnsupportedSchemaError(keyword, "only false");
    if (keyword === "nullable" && typeof value !== "boolean") throw new GrammarError("nullable must be a boolean");
  }
}

export function count(schema: Schema, keyword: string, fallback: number): number {
  const value = schema[keyword];
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new GrammarError(`${keyword} must be a non-negative integer`);
  }
  return value;
}

/** Converts a size overflow inside `expand` into an error that names the keyword responsible. */
export function blamed<T>(keyword: string, expand: () => T): T {
  try {
    return expand();
  } catch (error) {
    if (error instanceof GrammarSizeError) throw new UnsupportedSchemaError(keyword, "the expansion is too large");
    throw error;
  }
}

export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function typeList(value: unknown): JsonType[] {
  const list = Array.isArray(value) ? value : [value];
  for (const type of list) {
    if (!TYPES.includes(type as JsonType))
      throw new UnsupportedSchemaError("type", `unknown type ${JSON.stringify(type)}`);
  }
  return list as JsonType[];
}

/**
 * Both schemas at once (allOf, $ref siblings, anyOf branches under their parent). Keywords that
 * depend on each other across the two (properties / additionalProperties, prefixItems / items) and
 * different values of one keyword are refused rather than guessed.
 */
export function merge(a: Schema, b: Schema): Schema | false {
  const merged: Schema = { ...a };
  for (const [keyword, value] of Object.entries(b)) {
    if (!(keyword in a) || IGNORED.has(keyword)) {
      if (!(keyword in a)) merged[keyword] = value;
      continue;
    }
    const mine = a[keyword];
    if (keyword === "type") {
      const other = typeList(value);
      const both = typeList(mine).flatMap((type) => {
        if (other.includes(type)) return [type];
        if (type === "number" && other.includes("integer")) return ["integer" as const];
        if (type === "integer" && other.includes("number")) return ["integer" as const];
        return [];
      });
      if (both.length === 0) return false;
      merged.type = both;
    } else if (keyword === "required") {
      merged.required = [...new Set([...(mine as string[]), ...(value as string[])])];
    } else if (keyword === "properties" && isSchemaObject(mine) && isSchemaObject(value)) {
      const properties: Schema = { ...mine };
      for (const [name, schema] of Object.entries(value)) {
        properties[name] = name in mine ? { allOf: [mine[name], schema] } : schema;
      }
      merged.properties = properties;
    } else if (!sameJson(mine, value)) {
      throw new UnsupportedSchemaError(keyword, "two schemas combined by allOf, anyOf or $ref set it differently");
    }
  }
  const declares = (schema: Schema, keyword: string) => keyword in schema;
  for (const [one, other] of [
    ["additionalProperties", "properties"],
    ["items", "prefixItems"],
  ] as const) {
    if (
      (declares(a, one) && declares(b, other) && !declares(a, other)) ||
      (declares(b, one) && declares(a, other) && !declares(b, other))
    ) {
      throw new UnsupportedSchemaError(one, `combined with ${other} from another schema`);
    }
  }
  return merged;
}

export function without(schema: Schema, ...keywords: string[]): Schema {
  const rest = { ...schema };
  for (const keyword of keywords) delete rest[keyword];
  return rest;
}

export const constrains = (schema: Schema) => Object.keys(schema).some((keyword) => !IGNORED.has(keyword));
