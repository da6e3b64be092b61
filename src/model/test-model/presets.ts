/**
 * The shapes of the test models: per family, a `tiny` model for tests (every dimension a multiple of
 * 128, so group sizes 32, 64 and 128 all quantize every matrix) and `1b` / `8b` / `12b` models with
 * the shapes of real checkpoints, for benchmarks. Where a family has no model of a size, the nearest
 * real one stands in and its entry says so.
 */

export const TEST_MODEL_ARCHS = ["llama", "qwen2", "qwen3", "gemma3", "gemma3_text"] as const;
export type TestModelArch = (typeof TEST_MODEL_ARCHS)[number];

export const TEST_MODEL_PRESETS = ["tiny", "1b", "8b", "12b"] as const;
export type TestModelPreset = (typeof TEST_MODEL_PRESETS)[number];

export interface GemmaShape {
  slidingWindow: number;
  slidingWindowPattern: number;
  ropeLocalBase: number;
  queryPreAttnScalar: number;
}

/** A language model's shape, in the terms of its config.json. */
export interface TextModelShape {
  /** The real checkpoint whose shape this is, for the generated README. */
  reproduces: string;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  rmsNormEps: number;
  ropeTheta: number;
  /** config.json's `rope_scaling`, verbatim. */
  ropeScaling: Record<string, number | string> | null;
  maxPositions: number;
  gemma: GemmaShape | null;
}

type Family = "llama" | "qwen2" | "qwen3" | "gemma3";

export function familyOf(arch: TestModelArch): Family {
  return arch === "gemma3_text" ? "gemma3" : arch;
}

const LLAMA3_ROPE_SCALING = (factor: number) => ({
  factor,
  low_freq_factor: 1,
  high_freq_factor: 4,
  original_max_position_embeddings: 8192,
  rope_type: "llama3",
});

const TINY = { hiddenSize: 128, intermediateSize: 384, heads: 4, kvHeads: 2, headDim: 32, vocabSize: 2048 };

// Tiny models: llama and qwen3 untied (their LM head is its own tensor), qwen2 and gemma3 tied, so
// both paths are exercised; llama keeps Llama 3's rope scaling and gemma3 the 4B/12B linear scaling.
const SHAPES: Record<Family, Record<TestModelPreset, Omit<TextModelShape, "gemma"> & { gemma?: GemmaShape }>> = {
  llama: {
    tiny: {
      reproduces: "none (a tiny Llama 3 for tests)",
      ...TINY,
      layers: 2,
      tieWordEmbeddings: false,
      rmsNormEps: 1e-5,
      ropeTheta: 500_000,
      ropeScaling: LLAMA3_ROPE_SCALING(32),
      maxPositions: 131_072,
    },
    "1b": {
      reproduces: "meta-llama/Llama-3.2-1B-Instruct",
      hiddenSize: 2048,
      intermediateSize: 8192,
      layers: 16,
      heads: 32,
      kvHeads: 8,
      headDim: 64,
      vocabSize: 128_256,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-5,
      ropeTheta: 500_000,
      ropeScaling: LLAMA3_ROPE_SCALING(32),
      maxPositions: 131_072,
    },
    "8b": {
      reproduces: "meta-llama/Llama-3.1-8B-Instruct",
      hiddenSize: 4096,
      intermediateSize: 14_336,
      layers: 32,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      vocabSize: 128_256,
      tieWordEmbeddings: false,
      rmsNormEps: 1e-5,
      ropeTheta: 500_000,
      ropeScaling: LLAMA3_ROPE_SCALING(8),
      maxPositions: 131_072,
    },
    // No Llama 3 has 12B parameters. Mistral NeMo 12B is a model_type "llama" network for mlx-lm
    // (mistral maps to llama.py) with head_dim 128 ≠ hidden/heads, which is worth benchmarking too;
    // its own vocabulary is 131072.
    "12b": {
      reproduces: "mistralai/Mistral-Nemo-Instruct-2407 (no 12B Llama exists)",
      hiddenSize: 5120,
      intermediateSize: 14_336,
      layers: 40,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      vocabSize: 131_072,
      tieWordEmbeddings: false,
      rmsNormEps: 1e-5,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 1_024_000,
    },
  },
  // mlx-lm's qwen2.py derives head_dim from hidden_size / heads, so every qwen2 shape keeps that.
  qwen2: {
    tiny: {
      reproduces: "none (a tiny Qwen2.5 for tests)",
      ...TINY,
      layers: 2,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 32_768,
    },
    "1b": {
      reproduces: "Qwen/Qwen2.5-1.5B-Instruct (no 1B Qwen2.5 exists)",
      hiddenSize: 1536,
      intermediateSize: 8960,
      layers: 28,
      heads: 12,
      kvHeads: 2,
      headDim: 128,
      vocabSize: 151_936,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 32_768,
    },
    "8b": {
      reproduces: "Qwen/Qwen2.5-7B-Instruct (no 8B Qwen2.5 exists; its vocabulary is 152064)",
      hiddenSize: 3584,
      intermediateSize: 18_944,
      layers: 28,
      heads: 28,
      kvHeads: 4,
      headDim: 128,
      vocabSize: 152_064,
      tieWordEmbeddings: false,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 32_768,
    },
    "12b": {
      reproduces: "Qwen/Qwen2.5-14B-Instruct (no 12B Qwen2.5 exists; its vocabulary is 152064)",
      hiddenSize: 5120,
      intermediateSize: 13_824,
      layers: 48,
      heads: 40,
      kvHeads: 8,
      headDim: 128,
      vocabSize: 152_064,
      tieWordEmbeddings: false,
      rmsNormEps: 1e-5,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 32_768,
    },
  },
  qwen3: {
    tiny: {
      reproduces: "none (a tiny Qwen3 for tests)",
      ...TINY,
      layers: 2,
      tieWordEmbeddings: false,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 40_960,
    },
    "1b": {
      reproduces: "Qwen/Qwen3-1.7B (no 1B Qwen3 exists)",
      hiddenSize: 2048,
      intermediateSize: 6144,
      layers: 28,
      heads: 16,
      kvHeads: 8,
      headDim: 128,
      vocabSize: 151_936,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 40_960,
    },
    "8b": {
      reproduces: "Qwen/Qwen3-8B",
      hiddenSize: 4096,
      intermediateSize: 12_288,
      layers: 36,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      vocabSize: 151_936,
      tieWordEmbeddings: false,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 40_960,
    },
    "12b": {
      reproduces: "Qwen/Qwen3-14B (no 12B Qwen3 exists)",
      hiddenSize: 5120,
      intermediateSize: 17_408,
      layers: 40,
      heads: 40,
      kvHeads: 8,
      headDim: 128,
      vocabSize: 151_936,
      tieWordEmbeddings: false,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 40_960,
    },
  },
  // Gemma 3 always ties its LM head to the embedding. Vocabulary: 262144 for the text-only 1B
  // checkpoint; the multimodal checkpoints (4B and up) carry 262208 (the image tokens), which
  // shapeOf() applies for --arch gemma3.
  gemma3: {
    // Six layers: 0–4 slide over a 16-token window, layer 5 is global, so a 64-token prompt crosses
    // the window; head_dim 64 ≠ hidden/heads, as in the real models.
    tiny: {
      reproduces: "none (a tiny Gemma 3 for tests)",
      ...TINY,
      headDim: 64,
      layers: 6,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: { factor: 8, rope_type: "linear" },
      maxPositions: 131_072,
      gemma: { slidingWindow: 16, slidingWindowPattern: 6, ropeLocalBase: 10_000, queryPreAttnScalar: 64 },
    },
    "1b": {
      reproduces: "google/gemma-3-1b-it",
      hiddenSize: 1152,
      intermediateSize: 6912,
      layers: 26,
      heads: 4,
      kvHeads: 1,
      headDim: 256,
      vocabSize: 262_144,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: null,
      maxPositions: 32_768,
      gemma: { slidingWindow: 512, slidingWindowPattern: 6, ropeLocalBase: 10_000, queryPreAttnScalar: 256 },
    },
    // No 8B Gemma 3 exists; the 4B is the nearest below (the 12B preset covers the one above).
    "8b": {
      reproduces: "google/gemma-3-4b-it (no 8B Gemma 3 exists)",
      hiddenSize: 2560,
      intermediateSize: 10_240,
      layers: 34,
      heads: 8,
      kvHeads: 4,
      headDim: 256,
      vocabSize: 262_208,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: { factor: 8, rope_type: "linear" },
      maxPositions: 131_072,
      gemma: { slidingWindow: 1024, slidingWindowPattern: 6, ropeLocalBase: 10_000, queryPreAttnScalar: 256 },
    },
    // The server's default model, mlx-community/gemma-3-12b-it-4bit.
    "12b": {
      reproduces: "google/gemma-3-12b-it (mlx-community/gemma-3-12b-it-4bit)",
      hiddenSize: 3840,
      intermediateSize: 15_360,
      layers: 48,
      heads: 16,
      kvHeads: 8,
      headDim: 256,
      vocabSize: 262_208,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: { factor: 8, rope_type: "linear" },
      maxPositions: 131_072,
      gemma: { slidingWindow: 1024, slidingWindowPattern: 6, ropeLocalBase: 10_000, queryPreAttnScalar: 256 },
    },
  },
};

/** Vocabulary sizes of Gemma 3's two layouts, for the sizes where the real checkpoints differ. */
const GEMMA3_TEXT_ONLY_VOCAB = 262_144;
const GEMMA3_MULTIMODAL_VOCAB = 262_208;

export function shapeOf(arch: TestModelArch, preset: TestModelPreset): TextModelShape {
  const { gemma, ...shape } = SHAPES[familyOf(arch)][preset];
  let vocabSize = shape.vocabSize;
  if (preset !== "tiny" && arch === "gemma3") vocabSize = GEMMA3_MULTIMODAL_VOCAB;
  if (preset !== "tiny" && arch === "gemma3_text") vocabSize = GEMMA3_TEXT_ONLY_VOCAB;
  return { ...shape, vocabSize, gemma: gemma ?? null };
}
