import { describeConfig, loadConfig } from "../../config/load.js";
import { parseCommandLine, settingFlagsHelp } from "../args.js";

const HELP = `Usage: agent-memory config [options]

Prints the effective configuration as JSON: for each SEMANTIC_* variable its value (secrets
masked) and where it came from (flag, environment, .env, default). Takes the same setting flags
as 'serve', so you can see what a command line would do:

${settingFlagsHelp()}`;

export function runConfig(args: string[]): number {
  const { settings, help } = parseCommandLine("config", args, { withSettings: true });
  if (help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const loaded = loadConfig({ flags: settings });
  for (const warning of loaded.warnings) process.stderr.write(`agent-memory: warning: ${warning}\n`);
  process.stdout.write(`${JSON.stringify(describeConfig(loaded), null, 2)}\n`);
  return 0;
}
