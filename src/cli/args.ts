/**
 * Command-line parsing with node:util's strict parseArgs. Setting flags (--port, --model, ...) come
 * from the settings table, so a flag, its variable and its help line cannot disagree.
 */
import { parseArgs } from "node:util";
import { SETTINGS, SETTING_KEYS, type SettingKey } from "../config/settings.js";

/** A mistake on the command line: exit code 2 and one line, as Unix tools do. */
export class UsageError extends Error {
  override name = "UsageError";
}

export const SETTING_FLAGS = SETTING_KEYS.filter((key) => SETTINGS[key].flag !== undefined);

export interface ParsedCommandLine {
  settings: Partial<Record<SettingKey, string>>;
  switches: Record<string, boolean>;
  help: boolean;
}

/** Parse `args` accepting the setting flags (when `withSettings`) plus the named boolean switches. */
export function parseCommandLine(
  command: string,
  args: string[],
  options: { withSettings: boolean; switches?: string[] },
): ParsedCommandLine {
  const spec: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  if (options.withSettings) for (const key of SETTING_FLAGS) spec[SETTINGS[key].flag!] = { type: "string" };
  for (const name of options.switches ?? []) spec[name] = { type: "boolean" };

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options: spec, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError(
      `${command}: ${describeParseError(error as Error & { code?: string })}; see 'agent-memory ${command} --help'`,
    );
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const settings: Partial<Record<SettingKey, string>> = {};
  if (options.withSettings) {
    for (const key of SETTING_FLAGS) {
      const value = values[SETTINGS[key].flag!];
      if (typeof value === "string") settings[key] = value;
    }
  }
  const switches = Object.fromEntries((options.switches ?? []).map((name) => [name, values[name] === true]));
  return { settings, switches, help: values.help === true };
}

function describeParseError(error: Error & { code?: string }): string {
  const quoted = error.message.match(/'(-[^']*)'/)?.[1];
  switch (error.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${quoted ?? ""}`.trim();
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return quoted ? `option ${quoted.split(" ")[0]} needs a value` : error.message;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${error.message.match(/'([^']*)'/)?.[1] ?? ""}`.trim();
    default:
      return error.message;
  }
}

/** Help lines for the setting flags: flag, meaning, variable and default. */
export function settingFlagsHelp(): string {
  return SETTING_FLAGS.map((key) => {
    const spec = SETTINGS[key];
    const fallback = spec.default === "" ? "none" : spec.default;
    return `  --${spec.flag!.padEnd(16)} ${spec.description}\n  ${"".padEnd(18)} [${spec.env}, default ${fallback}]`;
  }).join("\n");
}
