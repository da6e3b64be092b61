#!/usr/bin/env node
/**
 * agent-memory's command line: serve | config | version | make-test-model. Mistakes on the command line exit 2,
 * unusable configuration exits 1, each with one line on stderr that names what to fix.
 */
import { ConfigError } from "../config/load.js";
import { VERSION } from "../version.js";
import { UsageError } from "./args.js";
import { TestModelError } from "../model/test-model/generate.js";
import { runConfig } from "./commands/config.js";
import { runMakeTestModel } from "./commands/make-test-model.js";
import { runServe } from "./commands/serve.js";

const USAGE = `agent-memory ${VERSION}: an LLM server whose agents keep their KV-cache memory

Usage: agent-memory <command> [options]

Commands:
  serve     start the HTTP server (Anthropic, OpenAI and Agent APIs)
  config    print the effective configuration as JSON, secrets masked, with each value's source
  version   print the version
  make-test-model
            write a random-weight model directory in the layout mlx-lm loads (for tests)

Run 'agent-memory <command> --help' for a command's options. Every option can also be set
with a SEMANTIC_* environment variable or in a .env file in the working directory.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return runServe(rest);
    case "config":
      return runConfig(rest);
    case "make-test-model":
      return runMakeTestModel(rest);
    case "version":
    case "--version":
    case "-v":
      if (rest.length > 0) throw new UsageError(`version: unexpected argument ${rest[0]}`);
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(
        `unknown command '${command}'; commands are serve, config, version, make-test-model (see 'agent-memory --help')`,
      );
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`agent-memory: ${error.message}\n`);
      process.exitCode = 2;
    } else if (error instanceof ConfigError || error instanceof TestModelError) {
      process.stderr.write(`agent-memory: ${error.message}\n`);
      process.exitCode = 1;
    } else {
      const err = error as Error;
      process.stderr.write(`agent-memory: ${err.name === "ListenError" ? err.message : (err.stack ?? String(err))}\n`);
      process.exitCode = 1;
    }
  },
);
