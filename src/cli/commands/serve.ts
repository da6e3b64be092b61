import { describeConfig, loadConfig } from "../../config/load.js";
import { createLogger } from "../../logging.js";
import { openModel, type OpenedModel } from "../../model/open.js";
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

  // Listen first, so orchestrators see the server come up and /health/ready answer 503 "loading"
  // while the weights stream in; then load, and only then report ready.
  let model: OpenedModel | null = null;
  const server = await startServer({
    loaded,
    logger,
    status: {
      backend: () => ({ requested: config.backend, active: model?.backend.name ?? null }),
      model: () => ({ id: config.mlxModelId, loaded: model !== null }),
      memoryBytes: () => {
        const report = model?.backend.memory();
        return { weights: report?.weightsBytes ?? 0, kvCache: report?.kvCacheBytes ?? 0 };
      },
    },
  });
  logger.info(`agent-memory ${VERSION} listening on ${server.url}; loading ${config.mlxModelId}`);

  let stopping = false;
  const stopped = new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        logger.warning(`second ${signal}: exiting without waiting`);
        resolve(1);
        process.exit(1);
      }
      stopping = true;
      logger.info(`${signal} received: shutting down`);
      void server.stop().then(({ cancelled, failedHooks }) => {
        logger.info(`stopped (${cancelled} request(s) cancelled, ${failedHooks} flush hook(s) failed)`);
        model?.model.dispose();
        model?.backend.dispose();
        resolve(failedHooks > 0 ? 1 : 0);
      });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });

  try {
    model = await openModel({ model: config.mlxModelId, backend: config.backend, logger });
  } catch (error) {
    if (stopping) return stopped;
    logger.error(describeLoadFailure(error));
    await server.stop();
    return 1;
  }
  if (stopping) return stopped;
  const opened = model;
  server.lifecycle.watchHealth(() => opened.backend.failure);
  // The engine and the protocols that answer /v1/* come with the next milestones.
  logger.warning("no generation engine in this build yet: only /health, /status and /metrics answer");
  server.lifecycle.markReady();
  logger.info(`ready: ${config.mlxModelId} on ${opened.backend.name}`);
  return stopped;
}

/** Load failures we anticipate are one line naming the file or field; anything else keeps its stack. */
function describeLoadFailure(error: unknown): string {
  const expected = [
    "ModelConfigError",
    "ModelWeightsError",
    "SafetensorsError",
    "ModelNotFoundError",
    "BackendUnavailableError",
    "UnsupportedOpError",
    "TokenizerConfigError",
    "ChatTemplateError",
  ];
  if (error instanceof Error && expected.includes(error.name)) return `cannot load the model: ${error.message}`;
  return `cannot load the model: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
}
