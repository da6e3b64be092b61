/**
 * Reads the configuration with precedence flag > environment > `.env` in the working directory >
 * default, validates it against the one schema, and remembers where each value came from so that
 * `agent-memory config` and error messages can say so.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseDotenv } from "dotenv";
import { ConfigSchema, SETTINGS, SETTING_KEYS, type Config, type SettingKey } from "./settings.js";

export type ValueSource = "flag" | "environment" | ".env" | "default";

export interface SettingOrigin {
  source: ValueSource;
  /** The string the value was parsed from. */
  raw: string;
}

export interface LoadedConfig {
  config: Config;
  origins: Record<SettingKey, SettingOrigin>;
  /** Path of the `.env` file that was read, if there was one. */
  dotenvPath: string | null;
  /** Things worth a log line but not worth refusing to start (unknown SEMANTIC_* variables). */
  warnings: string[];
}

export interface LoadOptions {
  /** Values from the command line, keyed by setting. */
  flags?: Partial<Record<SettingKey, string>>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** A configuration that cannot be used; the message is one line naming the variable, value and fix. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const flags = options.flags ?? {};
  const env = options.env ?? process.env;
  const { values: dotenv, path: dotenvPath } = readDotenv(options.cwd ?? process.cwd());

  const raw = {} as Record<SettingKey, string>;
  const origins = {} as Record<SettingKey, SettingOrigin>;
  for (const key of SETTING_KEYS) {
    const spec = SETTINGS[key];
    const fromFlag = flags[key];
    const fromEnv = env[spec.env];
    const fromDotenv = dotenv[spec.env];
    const [value, source]: [string, ValueSource] =
      fromFlag !== undefined
        ? [fromFlag, "flag"]
        : fromEnv !== undefined
          ? [fromEnv, "environment"]
          : fromDotenv !== undefined
            ? [fromDotenv, ".env"]
            : [spec.default, "default"];
    raw[key] = value;
    origins[key] = { source, raw: value };
  }

  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = issue.path[0] as SettingKey;
      return describeProblem(key, origins[key], issue.message, dotenvPath);
    });
    throw new ConfigError(`invalid configuration: ${[...new Set(problems)].join("; ")}`);
  }

  return {
    config: parsed.data,
    origins,
    dotenvPath,
    warnings: unknownSettingWarnings(env, dotenv, dotenvPath),
  };
}

function describeProblem(key: SettingKey, origin: SettingOrigin, message: string, dotenvPath: string | null): string {
  const spec = SETTINGS[key];
  const where =
    origin.source === "flag"
      ? `--${spec.flag} (from the command line)`
      : origin.source === ".env"
        ? `${spec.env} (from ${dotenvPath})`
        : origin.source === "environment"
          ? `${spec.env} (from the environment)`
          : `${spec.env} (default)`;
  const shown = spec.secret ? "<secret>" : JSON.stringify(origin.raw);
  return `${where} = ${shown}: ${message}; allowed: ${spec.value.allowed}`;
}

function readDotenv(cwd: string): { values: Record<string, string>; path: string | null } {
  const path = join(cwd, ".env");
  let contents: string;
  try {
    contents = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { values: {}, path: null };
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message}`);
  }
  return { values: parseDotenv(contents), path };
}

function unknownSettingWarnings(
  env: NodeJS.ProcessEnv,
  dotenv: Record<string, string>,
  dotenvPath: string | null,
): string[] {
  const known = new Set(SETTING_KEYS.map((key) => SETTINGS[key].env));
  const warnings: string[] = [];
  const check = (name: string, where: string) => {
    if (!name.startsWith("SEMANTIC_") || known.has(name)) return;
    const suggestion = closestName(name, [...known]);
    warnings.push(
      `unknown setting ${name} in ${where}${suggestion ? ` (did you mean ${suggestion}?)` : ""}; it is ignored`,
    );
  };
  for (const name of Object.keys(env)) check(name, "the environment");
  for (const name of Object.keys(dotenv)) check(name, dotenvPath ?? ".env");
  return warnings;
}

function closestName(name: string, candidates: string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return bestDistance <= 3 ? best : null;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}

const MASK = "********";

/** The effective configuration as `agent-memory config` prints it: secrets masked, origins named. */
export function describeConfig(loaded: LoadedConfig): Record<string, { value: unknown; source: string }> {
  const described: Record<string, { value: unknown; source: string }> = {};
  for (const key of SETTING_KEYS) {
    const spec = SETTINGS[key];
    const value = loaded.config[key];
    const isEmpty = value === null || (Array.isArray(value) && value.length === 0);
    const shown = spec.secret && !isEmpty ? (Array.isArray(value) ? value.map(() => MASK) : MASK) : value;
    const origin = loaded.origins[key];
    described[spec.env] = {
      value: shown,
      source: origin.source === ".env" ? `.env (${loaded.dotenvPath})` : origin.source,
    };
  }
  return described;
}
