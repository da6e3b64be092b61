import { describeConfig, loadConfig } from "../../config/load.js";
import { createLogger } from "../../logging.js";
import { startServer } from "../../server/serve.js";
import { VERSION } from "../../version.js";
import { parseCommandLine, settingFlagsHelp } from "../args.js";

const HELP = `Usage: agent-memory serve [options]

Starts the HTTP server. Options (each also a SEMANTIC_* variable or a .env line; a flag wins over
the environment, which wins over .env):

${settingFlagsHelp()}
  --help, -h         show this help

On SIGINT or SIGTERM the server stops accepting, lets in-flight requests finish for up to
SEMANTIC_SERVER_SHUTDOWN_TIMEOUT_S seconds, persists what must be kept, and exits 0.`;

export async function runServe(args: string[]): Promise<number> {
  const { settings, help } = parseCommandLine("serve", args, { withSettings: true });
  if (help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const loaded = loadConfig({ flags: settings });
  const { config } = loaded;
  const logger = createLogger(config.serverLogLevel);
  for (const warning of loaded.warnings) logger.warning(warning);
  logger.debug(`configuration: ${JSON.stringify(describeConfig(loaded))}`);

  const server = await startServer({ loaded, logger });
  // No model runtime exists in this build yet, so there is nothing to load before being ready.
  logger.warning(
    `no model runtime in this build yet: ${config.mlxModelId} is not loaded; only /health, /status and /metrics answer`,
  );
  server.lifecycle.markReady();
  logger.info(`agent-memory ${VERSION} listening on ${server.url} (backend ${config.backend})`);

  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        logger.warning(`second ${signal}: exiting without waiting`);
        resolve(1);
        process.exit(1);
      }
      logger.info(`${signal} received: shutting down`);
      void server.stop().then(({ cancelled, failedHooks }) => {
        logger.info(`stopped (${cancelled} request(s) cancelled, ${failedHooks} flush hook(s) failed)`);
        resolve(failedHooks > 0 ? 1 : 0);
      });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}
