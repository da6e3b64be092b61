/**
 * Value types for settings. Every setting arrives as a string (a flag, an environment variable or a
 * line of `.env`), so each type is a zod schema from string to its typed value, plus a sentence that
 * says what is allowed — that sentence is what a user reads when a value is rejected, and what the
 * README's configuration table shows.
 */
import { homedir } from "node:os";
import { z } from "zod";

export interface ValueType<T> {
  schema: z.ZodType<T, string>;
  allowed: string;
}

export function text(): ValueType<string> {
  return { schema: z.string().trim().min(1, "must not be empty"), allowed: "a non-empty string" };
}

/** An optional string: empty means "not set" (e.g. `SEMANTIC_API_KEY=` disables auth). */
export function optionalText(): ValueType<string | null> {
  return {
    schema: z
      .string()
      .trim()
      .transform((value) => (value === "" ? null : value)),
    allowed: "a string, or empty for none",
  };
}

export function integer(min: number, max: number): ValueType<number> {
  return {
    schema: z
      .string()
      .trim()
      .regex(/^[+-]?\d+$/, "expected an integer")
      .transform(Number)
      .pipe(z.number().int().min(min, `must be >= ${min}`).max(max, `must be <= ${max}`)),
    allowed: `an integer from ${min} to ${max}`,
  };
}

export function decimal(min: number, max: number): ValueType<number> {
  return {
    schema: z
      .string()
      .trim()
      .regex(/^[+-]?(\d+\.?\d*|\.\d+)$/, "expected a number")
      .transform(Number)
      .pipe(z.number().min(min, `must be >= ${min}`).max(max, `must be <= ${max}`)),
    allowed: `a number from ${min} to ${max}`,
  };
}

const TRUE_WORDS = ["true", "1", "yes", "on"];
const FALSE_WORDS = ["false", "0", "no", "off"];

export function boolean(): ValueType<boolean> {
  return {
    schema: z
      .string()
      .trim()
      .toLowerCase()
      .refine((value) => TRUE_WORDS.includes(value) || FALSE_WORDS.includes(value), "not a boolean")
      .transform((value) => TRUE_WORDS.includes(value)),
    allowed: "true or false (also 1/0, yes/no, on/off)",
  };
}

/** One of a fixed set of words, matched without regard to case, returned in the canonical spelling. */
export function choice<const T extends string>(values: readonly T[]): ValueType<T> {
  const byLowercase = new Map(values.map((value) => [value.toLowerCase(), value]));
  return {
    schema: z
      .string()
      .trim()
      .refine((value) => byLowercase.has(value.toLowerCase()), "not an allowed value")
      .transform((value) => byLowercase.get(value.toLowerCase()) as T),
    allowed: `one of ${values.join(", ")}`,
  };
}

/** Comma-separated list; blanks are dropped, so an empty string is an empty list. */
export function list(): ValueType<string[]> {
  return {
    schema: z.string().transform((value) =>
      value
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== ""),
    ),
    allowed: "a comma-separated list",
  };
}

/** A filesystem path; a leading `~` is the user's home directory, as in a shell. */
export function path(): ValueType<string> {
  return {
    schema: z
      .string()
      .trim()
      .min(1, "must not be empty")
      .transform((value) => expandHome(value)),
    allowed: "a path (a leading ~ is your home directory)",
  };
}

export function expandHome(value: string): string {
  if (value === "~") return homedir();
  if (value.startsWith("~/")) return homedir() + value.slice(1);
  return value;
}

/** KV-cache storage bits: 4 or 8 for MLX's affine quantization, `none` for unquantized. */
export function kvBits(): ValueType<4 | 8 | null> {
  return {
    schema: z
      .string()
      .trim()
      .toLowerCase()
      .refine((value) => ["4", "8", "none"].includes(value), "not an allowed value")
      .transform((value) => (value === "none" ? null : (Number(value) as 4 | 8))),
    allowed: "4, 8 or none",
  };
}
