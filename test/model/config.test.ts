import { describe, expect, it } from "vitest";
import { ModelConfigError, parseModelConfig } from "../../src/model/config.js";

const llama = {
  model_type: "llama",
  hidden_size: 2048,
  intermediate_size: 8192,
  num_hidden_layers: 16,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  vocab_size: 128256,
  rope_theta: 500000,
  rope_scaling: {
    rope_type: "llama3",
    factor: 32,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 8192,
  },
  tie_word_embeddings: true,
};

describe("config.json", () => {
  it("normalizes a Llama 3.2 config, head_dim derived", () => {
    expect(parseModelConfig(llama)).toMatchObject({
      architecture: "llama",
      layers: 16,
      heads: 32,
      kvHeads: 8,
      headDim: 64,
      ropeTheta: 500000,
      ropeScaling: { kind: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
      attentionBias: false,
      quantization: null,
      weightPrefix: "",
    });
  });

  it("takes a multimodal Gemma 3 checkpoint's text_config with mlx-lm's defaults", () => {
    const config = parseModelConfig({
      model_type: "gemma3",
      text_config: {
        model_type: "gemma3_text",
        hidden_size: 3840,
        intermediate_size: 15360,
        num_hidden_layers: 48,
        num_attention_heads: 16,
        num_key_value_heads: 8,
        sliding_window: 1024,
        rope_scaling: { factor: 8.0, rope_type: "linear" },
      },
      quantization: { group_size: 64, bits: 4 },
    });
    expect(config).toMatchObject({
      architecture: "gemma3",
      vocabSize: 262208,
      headDim: 256,
      rmsNormEps: 1e-6,
      ropeTheta: 1_000_000,
      ropeScaling: { kind: "linear", factor: 8 },
      tieWordEmbeddings: true,
      gemma: { slidingWindow: 1024, slidingWindowPattern: 6, ropeLocalBase: 10_000, queryPreAttnScalar: 256 },
      quantization: { groupSize: 64, bits: 4 },
      weightPrefix: "language_model.",
    });
    // Head counts left out of text_config default to 8 and 4 in mlx-lm's multimodal loader.
    expect(parseModelConfig({ model_type: "gemma3", text_config: { rms_norm_eps: 1e-6 } })).toMatchObject({
      heads: 8,
      kvHeads: 4,
    });
  });

  it("reads per-module quantization overrides and unquantized modules", () => {
    const config = parseModelConfig({
      ...llama,
      quantization: {
        group_size: 64,
        bits: 4,
        "model.embed_tokens": { group_size: 32, bits: 8 },
        lm_head: false,
      },
    });
    expect(config.quantization?.overrides).toEqual(
      new Map<string, unknown>([
        ["model.embed_tokens", { groupSize: 32, bits: 8 }],
        ["lm_head", false],
      ]),
    );
  });

  it("gives qwen2 its q/k/v biases and qwen3 its explicit head_dim", () => {
    expect(parseModelConfig({ ...llama, model_type: "qwen2", rope_scaling: null }).attentionBias).toBe(true);
    expect(parseModelConfig({ ...llama, model_type: "qwen3", head_dim: 128, rope_scaling: null }).headDim).toBe(128);
  });

  it.each([
    [
      { ...llama, model_type: "mamba" },
      'model_type "mamba" is not supported (supported: llama, qwen2, qwen3, gemma3, gemma3_text)',
    ],
    [{ ...llama, quantization: { group_size: 64, bits: 3 } }, "quantization.bits 3 is not supported (supported: 4, 8)"],
    [
      { ...llama, quantization: { group_size: 32, bits: 4, mode: "mxfp4" } },
      'quantization.mode "mxfp4" is not supported',
    ],
    [
      { ...llama, quantization: { group_size: 64, bits: 4, "model.layers.0.mlp": { group_size: 16, bits: 4 } } },
      'quantization["model.layers.0.mlp"].group_size 16 is not supported',
    ],
    [{ ...llama, hidden_size: undefined }, "hidden_size is missing"],
    [{ ...llama, num_key_value_heads: 5 }, "num_attention_heads 32 is not a multiple of num_key_value_heads 5"],
    [{ ...llama, rope_scaling: { rope_type: "yarn", factor: 4 } }, 'rope_scaling type "yarn" is not supported'],
    [{ model_type: "gemma3" }, "text_config is missing"],
  ])("refuses %# with one line naming the file and field", (raw, message) => {
    expect(() => parseModelConfig(raw, "/models/x/config.json")).toThrow(ModelConfigError);
    expect(() => parseModelConfig(raw, "/models/x/config.json")).toThrow(`/models/x/config.json: ${message}`);
  });
});
