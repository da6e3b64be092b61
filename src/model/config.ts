/**
 * A model's config.json, normalized for the architecture files: llama (Llama 3.x, SmolLM2), qwen2,
 * qwen3 and gemma3 text — including multimodal Gemma 3 checkpoints, whose language model is described
 * by `text_config` and whose weights carry a `language_model.` prefix. Fields a config leaves out get
 * the defaults of mlx-lm's ModelArgs (the reference implementation), not of transformers. Anything we
 * cannot run is refused with one line naming the file, the field and what is supported.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export type Architecture = "llama" | "qwen2" | "qwen3" | "gemma3";

export type RopeScaling =
  | { kind: "linear"; factor: number }
  | { kind: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface QuantizationSpec {
  groupSize: 32 | 64 | 128;
  bits: 4 | 8;
}

export interface Quantization extends QuantizationSpec {
  /** Per-module settings that differ from the default; `false` means that module is not quantized. */
  overrides: ReadonlyMap<string, QuantizationSpec | false>;
}

export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeTraditional: boolean;
  ropeScaling: RopeScaling | null;
  maxPositions: number | null;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (qwen2; llama when attention_bias). */
  attentionBias: boolean;
  gemma: {
    slidingWindow: number;
    slidingWindowPattern: number;
    ropeLocalBase: number;
    queryPreAttnScalar: number;
  } | null;
  quantization: Quantization | null;
  /** Prefix of the language model's weight names ("language_model." in multimodal checkpoints). */
  weightPrefix: string;
}

export class ModelConfigError extends Error {
  override name = "ModelConfigError";
}

const SUPPORTED = ["llama", "qwen2", "qwen3", "gemma3", "gemma3_text"];

export async function readModelConfig(directory: string): Promise<ModelConfig> {
  const path = join(directory, "config.json");
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new ModelConfigError(`${path}: ${(error as Error).message}`);
  }
  return parseModelConfig(raw, path);
}

export function parseModelConfig(raw: unknown, path = "config.json"): ModelConfig {
  const fail = (message: string) => new ModelConfigError(`${path}: ${message}`);
  if (raw === null || typeof raw !== "object") throw fail("is not a JSON object");
  const top = raw as Record<string, unknown>;
  const modelType = top.model_type;
  if (typeof modelType !== "string" || !SUPPORTED.includes(modelType)) {
    throw fail(`model_type ${JSON.stringify(modelType)} is not supported (supported: ${SUPPORTED.join(", ")})`);
  }

  let fields = top;
  let prefix = "";
  let where = "";
  if (modelType === "gemma3") {
    // Multimodal: the text model lives in text_config; mlx-lm takes the vocabulary (default 262208)
    // from the top level and defaults the head counts to 8 and 4 when text_config leaves them out.
    if (top.text_config === null || typeof top.text_config !== "object") throw fail("text_config is missing");
    const text = top.text_config as Record<string, unknown>;
    fields = { num_attention_heads: 8, num_key_value_heads: 4, ...text, vocab_size: top.vocab_size ?? 262208 };
    prefix = "language_model.";
    where = "text_config.";
  }
  const architecture: Architecture = modelType.startsWith("gemma3") ? "gemma3" : (modelType as Architecture);
  const gemmaDefaults: Record<string, unknown> =
    architecture === "gemma3"
      ? {
          hidden_size: 1152,
          num_hidden_layers: 26,
          intermediate_size: 6912,
          num_attention_heads: 4,
          head_dim: 256,
          rms_norm_eps: 1e-6,
          vocab_size: 262144,
          num_key_value_heads: 1,
          rope_theta: 1_000_000,
          max_position_embeddings: 32768,
        }
      : { rope_theta: architecture === "qwen2" ? 1_000_000 : 10_000 };
  const value = (name: string) => fields[name] ?? gemmaDefaults[name];
  const integer = (name: string, fallback?: number): number => {
    const field = value(name) ?? fallback;
    if (!Number.isInteger(field) || (field as number) <= 0) {
      throw fail(
        `${where}${name} ${field === undefined ? "is missing" : `= ${JSON.stringify(field)} is not a positive integer`}`,
      );
    }
    return field as number;
  };
  const number = (name: string, fallback?: number): number => {
    const field = value(name) ?? fallback;
    if (typeof field !== "number" || !Number.isFinite(field)) {
      throw fail(
        `${where}${name} ${field === undefined ? "is missing" : `= ${JSON.stringify(field)} is not a number`}`,
      );
    }
    return field;
  };

  const hiddenSize = integer("hidden_size");
  const heads = integer("num_attention_heads");
  const ropeParameters = value("rope_parameters") as Record<string, unknown> | undefined;
  const config: ModelConfig = {
    architecture,
    hiddenSize,
    intermediateSize: integer("intermediate_size"),
    layers: integer("num_hidden_layers"),
    heads,
    kvHeads: integer("num_key_value_heads", heads),
    headDim: integer("head_dim", hiddenSize / heads),
    vocabSize: integer("vocab_size"),
    rmsNormEps: number("rms_norm_eps"),
    ropeTheta: number("rope_theta", ropeParameters?.rope_theta as number | undefined),
    ropeTraditional: value("rope_traditional") === true,
    ropeScaling: ropeScaling(
      (value("rope_scaling") ?? ropeParameters ?? null) as Record<string, unknown> | null,
      fail,
      where,
    ),
    maxPositions: (value("max_position_embeddings") as number | undefined) ?? null,
    tieWordEmbeddings: architecture === "gemma3" ? true : value("tie_word_embeddings") !== false,
    attentionBias: architecture === "qwen2" || value("attention_bias") === true,
    gemma:
      architecture === "gemma3"
        ? {
            slidingWindow: integer("sliding_window", 512),
            slidingWindowPattern: integer("sliding_window_pattern", 6),
            ropeLocalBase: number("rope_local_base_freq", 10_000),
            queryPreAttnScalar: number("query_pre_attn_scalar", 256),
          }
        : null,
    quantization: quantization(top.quantization ?? top.quantization_config, fail),
    weightPrefix: prefix,
  };
  if (config.heads % config.kvHeads !== 0) {
    throw fail(
      `${where}num_attention_heads ${config.heads} is not a multiple of num_key_value_heads ${config.kvHeads}`,
    );
  }
  return config;
}

function ropeScaling(
  raw: Record<string, unknown> | null,
  fail: (message: string) => ModelConfigError,
  where: string,
): RopeScaling | null {
  if (raw === null) return null;
  const type = raw.rope_type ?? raw.type;
  if (type === undefined || type === "default") return null;
  const factor = raw.factor;
  if (typeof factor !== "number") throw fail(`${where}rope_scaling.factor is missing`);
  if (type === "linear") return { kind: "linear", factor };
  if (type === "llama3") {
    return {
      kind: "llama3",
      factor,
      lowFreqFactor: (raw.low_freq_factor as number | undefined) ?? 1,
      highFreqFactor: (raw.high_freq_factor as number | undefined) ?? 4,
      originalMaxPositions: (raw.original_max_position_embeddings as number | undefined) ?? 8192,
    };
  }
  throw fail(`${where}rope_scaling type ${JSON.stringify(type)} is not supported (supported: linear, llama3)`);
}

function quantizationSpec(raw: unknown, field: string, fail: (message: string) => ModelConfigError): QuantizationSpec {
  const { group_size: groupSize, bits, mode } = (raw ?? {}) as Record<string, unknown>;
  if (mode !== undefined && mode !== "affine") {
    throw fail(`${field}.mode ${JSON.stringify(mode)} is not supported (supported: affine, MLX's default)`);
  }
  if (bits !== 4 && bits !== 8) throw fail(`${field}.bits ${JSON.stringify(bits)} is not supported (supported: 4, 8)`);
  if (groupSize !== 32 && groupSize !== 64 && groupSize !== 128) {
    throw fail(`${field}.group_size ${JSON.stringify(groupSize)} is not supported (supported: 32, 64, 128)`);
  }
  return { groupSize, bits };
}

/**
 * mlx-lm writes `"quantization": {"group_size", "bits", "mode"?, "<module path>": {…} | false, …}`;
 * entries whose value is an object or `false` are per-module overrides.
 */
function quantization(raw: unknown, fail: (message: string) => ModelConfigError): Quantization | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== "object") throw fail("quantization is not an object");
  const spec = quantizationSpec(raw, "quantization", fail);
  const overrides = new Map<string, QuantizationSpec | false>();
  for (const [key, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (entry === false) overrides.set(key, false);
    else if (entry !== null && typeof entry === "object")
      overrides.set(key, quantizationSpec(entry, `quantization["${key}"]`, fail));
  }
  return { ...spec, overrides };
}
