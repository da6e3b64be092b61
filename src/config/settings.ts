/**
 * Every setting agent-memory has, in one place: its environment variable, its CLI flag (if any), its
 * default, what it means and what values it takes. The loader, `agent-memory config`, the README's
 * configuration table and the CLI's `--help` are all derived from this table.
 */
import { z } from "zod";
import { boolean, choice, decimal, integer, kvBits, list, optionalText, path, text, type ValueType } from "./values.js";

export const LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const BACKEND_CHOICES = ["auto", "mlx", "webgpu"] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export interface SettingSpec<T> {
  env: string;
  /** Long flag without the dashes, for settings that `agent-memory serve` takes on the command line. */
  flag?: string;
  /** The default as a user would write it; null means "unset" for optional settings. */
  default: string;
  description: string;
  /** Secrets are masked wherever the configuration is printed. */
  secret?: boolean;
  value: ValueType<T>;
}

function setting<T>(spec: SettingSpec<T>): SettingSpec<T> {
  return spec;
}

function groupSize(): ValueType<32 | 64 | 128> {
  const words = choice(["32", "64", "128"] as const);
  return { schema: words.schema.transform((word) => Number(word) as 32 | 64 | 128), allowed: words.allowed };
}

export const SETTINGS = {
  serverHost: setting({
    env: "SEMANTIC_SERVER_HOST",
    flag: "host",
    default: "0.0.0.0",
    description: "Address the HTTP server binds to.",
    value: text(),
  }),
  serverPort: setting({
    env: "SEMANTIC_SERVER_PORT",
    flag: "port",
    default: "8000",
    description: "TCP port of the HTTP server (0 picks a free port and logs it).",
    value: integer(0, 65535),
  }),
  serverLogLevel: setting({
    env: "SEMANTIC_SERVER_LOG_LEVEL",
    flag: "log-level",
    default: "INFO",
    description: "Log verbosity; DEBUG explains decisions such as cache hits and misses.",
    value: choice(LOG_LEVELS),
  }),
  serverCorsOrigins: setting({
    env: "SEMANTIC_SERVER_CORS_ORIGINS",
    default: "http://localhost:3000",
    description: "Origins allowed by CORS, comma-separated; `*` allows any origin, empty allows none.",
    value: list(),
  }),
  serverRateLimitPerAgent: setting({
    env: "SEMANTIC_SERVER_RATE_LIMIT_PER_AGENT",
    default: "60",
    description: "Requests per minute for one agent (session id from X-Session-ID or body `session_id`); 0 disables.",
    value: integer(0, 1_000_000),
  }),
  serverRateLimitGlobal: setting({
    env: "SEMANTIC_SERVER_RATE_LIMIT_GLOBAL",
    default: "1000",
    description: "Requests per minute for the whole server; 0 disables.",
    value: integer(0, 10_000_000),
  }),
  serverMaxBodyMb: setting({
    env: "SEMANTIC_SERVER_MAX_BODY_MB",
    default: "32",
    description: "Largest request body accepted, in MiB; larger bodies get 413.",
    value: decimal(0.001, 4096),
  }),
  serverShutdownTimeoutS: setting({
    env: "SEMANTIC_SERVER_SHUTDOWN_TIMEOUT_S",
    default: "10",
    description: "On SIGINT/SIGTERM, seconds to let in-flight requests finish before they are cancelled.",
    value: decimal(0, 3600),
  }),
  serverMaxQueuedRequests: setting({
    env: "SEMANTIC_SERVER_MAX_QUEUED_REQUESTS",
    default: "256",
    description:
      "Generation requests allowed to wait for the engine; beyond it new ones get 529/503 overloaded with Retry-After. 0: no limit.",
    value: integer(0, 1_000_000),
  }),
  apiKeys: setting({
    env: "SEMANTIC_API_KEY",
    flag: "api-key",
    default: "",
    description:
      "API keys, comma-separated. When set, every route but /health* needs `x-api-key: KEY` or `Authorization: Bearer KEY`.",
    secret: true,
    value: list(),
  }),
  adminKey: setting({
    env: "SEMANTIC_ADMIN_KEY",
    default: "",
    description: "Key for the /admin/* routes, sent as `x-admin-key`; empty disables those routes.",
    secret: true,
    value: optionalText(),
  }),
  backend: setting({
    env: "SEMANTIC_BACKEND",
    flag: "backend",
    default: "auto",
    description: "Compute backend: mlx, webgpu, or auto (MLX on Apple Silicon when built, WebGPU otherwise).",
    value: choice(BACKEND_CHOICES),
  }),
  webgpuMatrix: setting({
    env: "SEMANTIC_WEBGPU_MATRIX",
    default: "true",
    description:
      "WebGPU: ask Dawn for f16 and subgroup matrices (tensor cores on NVIDIA) for prefill attention; false keeps every kernel in f32.",
    value: boolean(),
  }),
  webgpuBoundsChecks: setting({
    env: "SEMANTIC_WEBGPU_BOUNDS_CHECKS",
    default: "false",
    description:
      "WebGPU: have Dawn clamp every array index in the kernels (its robustness, which browsers need for untrusted shaders). Off by default, as in Chrome's own renderer: our kernels keep their indices in bounds (the conformance suite runs them without the checks), and the checks made the prefill attention 1.4× slower on an H200.",
    value: boolean(),
  }),
  mlxModelId: setting({
    env: "SEMANTIC_MLX_MODEL_ID",
    flag: "model",
    default: "mlx-community/gemma-3-12b-it-4bit",
    description: "Model to serve: a Hugging Face repo id or a local directory.",
    value: text(),
  }),
  modelAliases: setting({
    env: "SEMANTIC_MODEL_ALIASES",
    default: "",
    description:
      "More model names for /v1/models to list, comma-separated (any requested name is served by the loaded model and echoed back).",
    value: list(),
  }),
  mlxCacheBudgetMb: setting({
    env: "SEMANTIC_MLX_CACHE_BUDGET_MB",
    default: "8192",
    description: "Bytes of KV-cache blocks kept in backend memory (hot tier), in MiB.",
    value: integer(16, 1_048_576),
  }),
  mlxMaxBatchSize: setting({
    env: "SEMANTIC_MLX_MAX_BATCH_SIZE",
    flag: "max-batch-size",
    default: "8",
    description: "Most sequences decoded together in one batched forward.",
    value: integer(1, 256),
  }),
  mlxPrefillStepSize: setting({
    env: "SEMANTIC_MLX_PREFILL_STEP_SIZE",
    default: "512",
    description: "Prompt tokens prefilled per chunk; chunks interleave with decode steps.",
    value: integer(16, 65_536),
  }),
  mlxWarmup: setting({
    env: "SEMANTIC_MLX_WARMUP",
    default: "true",
    description:
      "Before reporting ready, run a prompt and batches of 1–8 once, so first requests wait for no kernel to compile.",
    value: boolean(),
  }),
  mlxKvBits: setting({
    env: "SEMANTIC_MLX_KV_BITS",
    default: "none",
    description: "KV-cache storage: 4 or 8 for MLX affine quantization, none for unquantized.",
    value: kvBits(),
  }),
  mlxKvGroupSize: setting({
    env: "SEMANTIC_MLX_KV_GROUP_SIZE",
    default: "64",
    description: "Group size of quantized KV-cache storage.",
    value: groupSize(),
  }),
  mlxMaxContextLength: setting({
    env: "SEMANTIC_MLX_MAX_CONTEXT_LENGTH",
    default: "0",
    description: "Longest prompt plus output in tokens; 0 uses the model's own limit.",
    value: integer(0, 10_000_000),
  }),
  mlxDefaultMaxTokens: setting({
    env: "SEMANTIC_MLX_DEFAULT_MAX_TOKENS",
    default: "4096",
    description: "Output tokens when a request does not say (OpenAI requests may omit max_tokens).",
    value: integer(1, 1_000_000),
  }),
  mlxDefaultTemperature: setting({
    env: "SEMANTIC_MLX_DEFAULT_TEMPERATURE",
    default: "1.0",
    description: "Sampling temperature when a request does not say (1.0, as the Anthropic and OpenAI APIs).",
    value: decimal(0, 2),
  }),
  agentMaxAgentsInMemory: setting({
    env: "SEMANTIC_AGENT_MAX_AGENTS_IN_MEMORY",
    default: "10",
    description: "Most agents whose KV caches stay in backend memory (hot tier).",
    value: integer(1, 100_000),
  }),
  agentCacheDir: setting({
    env: "SEMANTIC_AGENT_CACHE_DIR",
    flag: "cache-dir",
    default: "~/.agent_memory/caches",
    description: "Directory of the on-disk (warm) tier of agent KV caches.",
    value: path(),
  }),
  agentLruEvictionEnabled: setting({
    env: "SEMANTIC_AGENT_LRU_EVICTION_ENABLED",
    default: "true",
    description: "Evict the least recently used agents when the hot tier is over its budget.",
    value: boolean(),
  }),
  agentEvictToDisk: setting({
    env: "SEMANTIC_AGENT_EVICT_TO_DISK",
    default: "true",
    description: "Write evicted agents to the cache directory (warm tier) instead of dropping them.",
    value: boolean(),
  }),
} as const;

export type SettingKey = keyof typeof SETTINGS;
type ValueOf<S> = S extends SettingSpec<infer T> ? T : never;
export type Config = { readonly [K in SettingKey]: ValueOf<(typeof SETTINGS)[K]> };

export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];

/** The one zod schema of the whole configuration, over the raw strings keyed by setting. */
export const ConfigSchema = z.object(
  Object.fromEntries(SETTING_KEYS.map((key) => [key, SETTINGS[key].value.schema])) as {
    [K in SettingKey]: z.ZodType<ValueOf<(typeof SETTINGS)[K]>, string>;
  },
);
