import { describeConfig, loadConfig } from "../../config/load.js";
import type { Config } from "../../config/settings.js";
import { createLogger, type Logger } from "../../logging.js";
import type { Metrics } from "../../metrics.js";
import { Engine } from "../../engine/engine.js";
import { warmUp } from "../../engine/warm-up.js";
import { AgentMemory } from "../../memory/agent-memory.js";
import { fingerprintModel } from "../../memory/persistence.js";
import { openModel, type OpenedModel } from "../../model/open.js";
import { ChatRuntime, RuntimeSlot } from "../../protocols/runtime.js";
import { mountProtocolRoutes } from "../../server/routes.js";
import { toolCallFormatFor } from "../../tools/parsers/index.js";
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
  let memory: AgentMemory | null = null;
  let engine: Engine | null = null;
  // The protocol routes answer 503 "loading" (with Retry-After) until the runtime is in its slot.
  const runtime = new RuntimeSlot();
  const server = await startServer({
    loaded,
    logger,
    mount: (app) => mountProtocolRoutes(app, { runtime, modelAliases: config.modelAliases }),
    status: {
      backend: () => ({ requested: config.backend, active: model?.backend.name ?? null }),
      model: () => ({ id: config.mlxModelId, loaded: model !== null }),
      agents: () => {
        const stats = memory?.stats();
        return { hot: stats?.hotAgents ?? 0, warm: stats?.warmAgents ?? 0 };
      },
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
        void (engine?.dispose() ?? Promise.resolve()).finally(() => {
          model?.model.dispose();
          model?.backend.dispose();
        });
        resolve(failedHooks > 0 ? 1 : 0);
      });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });

  try {
    // The WebGPU backend reads this when it creates its device: hand it the resolved value (a flag,
    // the environment or .env).
    process.env.SEMANTIC_WEBGPU_MATRIX = String(config.webgpuMatrix);
    process.env.SEMANTIC_WEBGPU_BOUNDS_CHECKS = String(config.webgpuBoundsChecks);
    model = await openModel({ model: config.mlxModelId, backend: config.backend, logger });
    ({ engine, memory } = await startEngine(model, config, logger, server.metrics));
  } catch (error) {
    if (stopping) return stopped;
    logger.error(describeLoadFailure(error));
    await server.stop();
    return 1;
  }
  if (stopping) return stopped;
  const opened = model;
  const agentMemory = memory;
  server.lifecycle.watchHealth(() => opened.backend.failure);
  // After in-flight requests end: every agent changed since it was last written goes to disk.
  server.lifecycle.onFlush("persist agent memory", () => agentMemory.flush());
  runtime.set(
    new ChatRuntime({
      modelId: opened.id,
      tokenizer: opened.tokenizer,
      engine: engine,
      memory: agentMemory,
      toolFormat: toolCallFormatFor(opened.config.architecture, opened.tokenizer.chatTemplateText),
      defaults: {
        maxTokens: config.mlxDefaultMaxTokens,
        temperature: config.mlxDefaultTemperature,
        maxQueuedRequests: config.serverMaxQueuedRequests,
      },
      metrics: server.metrics,
      logger: logger.child("protocols"),
    }),
  );
  server.lifecycle.markReady();
  logger.info(`ready: ${config.mlxModelId} on ${opened.backend.name}`);
  return stopped;
}

/**
 * The engine over the loaded model and the agent memory behind it; the warm index is rebuilt from
 * SEMANTIC_AGENT_CACHE_DIR before the server reports ready.
 */
async function startEngine(
  model: OpenedModel,
  config: Config,
  logger: Logger,
  metrics: Metrics,
): Promise<{ engine: Engine; memory: AgentMemory }> {
  const fingerprints = await fingerprintModel(model.directory);
  const memory = new AgentMemory({
    maxAgentsInMemory: config.agentMaxAgentsInMemory,
    lruEvictionEnabled: config.agentLruEvictionEnabled,
    warm: config.agentEvictToDisk
      ? {
          directory: config.agentCacheDir,
          modelId: model.id,
          weightsFingerprint: fingerprints.weights,
          tokenizerFingerprint: fingerprints.tokenizer,
          backend: model.backend.name,
        }
      : null,
    logger: logger.child("memory"),
    metrics,
  });
  const engine = new Engine(
    model.backend,
    model.model,
    model.tokenizer,
    {
      maxBatchSize: config.mlxMaxBatchSize,
      prefillStepSize: config.mlxPrefillStepSize,
      maxContextLength: config.mlxMaxContextLength,
      kvBudgetBytes: config.mlxCacheBudgetMb * 2 ** 20,
      kvStorage:
        config.mlxKvBits === null
          ? { kind: "float", dtype: "f16" }
          : { kind: "quantized", bits: config.mlxKvBits, groupSize: kvGroupSize(config.mlxKvGroupSize) },
    },
    memory,
  );
  await memory.start();
  logger.info(
    `engine: batch ${config.mlxMaxBatchSize}, prefill chunks of ${config.mlxPrefillStepSize}, context ${engine.contextLimit} tokens, ` +
      `${(engine.kvBytes / 2 ** 20).toFixed(0)} MiB of KV blocks`,
  );
  if (config.mlxWarmup) {
    const { seconds, requests } = await warmUp(engine, {
      prefillStepSize: config.mlxPrefillStepSize,
      maxBatchSize: config.mlxMaxBatchSize,
      vocabSize: model.config.vocabSize,
    });
    logger.info(
      `engine: warmed up in ${seconds.toFixed(1)} s (${requests} requests: a prompt, batches of 1–${config.mlxMaxBatchSize}); SEMANTIC_MLX_WARMUP=false skips it`,
    );
  }
  return { engine, memory };
}

/** Quantized KV storage groups 64 values (the layout both backends implement). */
function kvGroupSize(groupSize: number): 64 {
  if (groupSize !== 64) {
    throw new KvSettingError(
      `SEMANTIC_MLX_KV_GROUP_SIZE=${groupSize}: quantized KV storage supports group size 64; set it to 64 or SEMANTIC_MLX_KV_BITS=none`,
    );
  }
  return 64;
}

class KvSettingError extends Error {
  override name = "KvSettingError";
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
    "KvSettingError",
  ];
  if (error instanceof Error && (expected.includes(error.name) || /^(SEMANTIC_|KV cache:)/.test(error.message))) {
    return `cannot load the model: ${error.message}`;
  }
  return `cannot load the model: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
}
