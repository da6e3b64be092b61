/**
 * config.json of a test model, field for field like the family's real checkpoints (after mlx-lm has
 * converted them: keys sorted, `quantization` and its copy `quantization_config` when quantized).
 * Gemma 3 comes in two layouts: `gemma3` is the multimodal checkpoint (mlx-community's
 * gemma-3-*-it-4bit, the server's default model) with the language model under `text_config` and a
 * `vision_config`; `gemma3_text` is the text-only one (gemma-3-1b-it).
 */
import type { QuantizationSpec } from "../config.js";
import { TORCH_DTYPE, type TestModelDtype } from "./encode.js";
import type { VisionShape } from "./layout.js";
import type { TestModelArch, TextModelShape } from "./presets.js";

export interface ConfigTokens {
  bosTokenId: number;
  eosTokenId: number | number[];
  padTokenId?: number;
  /** Ids of Gemma's image tokens, when the tokenizer has them. */
  imageTokens?: { boi?: number; eoi?: number; image?: number };
}

export interface ConfigJsonOptions {
  arch: TestModelArch;
  shape: TextModelShape;
  dtype: TestModelDtype;
  quantization: QuantizationSpec | null;
  vision: VisionShape | null;
  tokens: ConfigTokens;
}

function sorted(object: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function attentionFields(shape: TextModelShape): Record<string, unknown> {
  return {
    hidden_size: shape.hiddenSize,
    intermediate_size: shape.intermediateSize,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    head_dim: shape.headDim,
    vocab_size: shape.vocabSize,
    rms_norm_eps: shape.rmsNormEps,
    rope_theta: shape.ropeTheta,
    rope_scaling: shape.ropeScaling,
    max_position_embeddings: shape.maxPositions,
    attention_dropout: 0.0,
    initializer_range: 0.02,
    use_cache: true,
  };
}

function gemmaTextFields(shape: TextModelShape): Record<string, unknown> {
  const gemma = shape.gemma!;
  return {
    ...attentionFields(shape),
    model_type: "gemma3_text",
    attention_bias: false,
    attn_logit_softcapping: null,
    final_logit_softcapping: null,
    hidden_activation: "gelu_pytorch_tanh",
    query_pre_attn_scalar: gemma.queryPreAttnScalar,
    rope_local_base_freq: gemma.ropeLocalBase,
    sliding_window: gemma.slidingWindow,
    sliding_window_pattern: gemma.slidingWindowPattern,
    cache_implementation: "hybrid",
  };
}

export function configJson(options: ConfigJsonOptions): Record<string, unknown> {
  const { arch, shape, dtype, tokens } = options;
  const ids: Record<string, unknown> = { bos_token_id: tokens.bosTokenId, eos_token_id: tokens.eosTokenId };
  if (tokens.padTokenId !== undefined) ids.pad_token_id = tokens.padTokenId;
  let config: Record<string, unknown>;
  switch (arch) {
    case "llama":
      config = {
        architectures: ["LlamaForCausalLM"],
        model_type: "llama",
        ...attentionFields(shape),
        attention_bias: false,
        hidden_act: "silu",
        mlp_bias: false,
        pretraining_tp: 1,
        tie_word_embeddings: shape.tieWordEmbeddings,
      };
      break;
    case "qwen2":
    case "qwen3": {
      const { head_dim: headDim, ...fields } = attentionFields(shape);
      config = {
        architectures: [arch === "qwen2" ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM"],
        model_type: arch,
        ...fields,
        // Qwen2 configs carry no head_dim (mlx-lm derives hidden/heads); Qwen3's always do.
        ...(arch === "qwen3" ? { head_dim: headDim, attention_bias: false } : {}),
        hidden_act: "silu",
        max_window_layers: shape.layers,
        sliding_window: arch === "qwen2" ? shape.maxPositions : null,
        use_sliding_window: false,
        tie_word_embeddings: shape.tieWordEmbeddings,
      };
      break;
    }
    case "gemma3_text":
      config = { architectures: ["Gemma3ForCausalLM"], ...gemmaTextFields(shape) };
      break;
    case "gemma3": {
      const vision = options.vision!;
      const image = tokens.imageTokens ?? {};
      config = {
        architectures: ["Gemma3ForConditionalGeneration"],
        model_type: "gemma3",
        // mlx-lm takes the vocabulary from the top level (default 262208), transformers from text_config.
        vocab_size: shape.vocabSize,
        text_config: sorted(gemmaTextFields(shape)),
        vision_config: sorted({
          model_type: "siglip_vision_model",
          hidden_size: vision.hiddenSize,
          intermediate_size: vision.intermediateSize,
          num_attention_heads: vision.heads,
          num_hidden_layers: 1,
          image_size: vision.imageSize,
          patch_size: vision.patchSize,
          num_channels: 3,
          layer_norm_eps: 1e-6,
          vision_use_head: false,
        }),
        mm_tokens_per_image: vision.tokensPerImage,
        initializer_range: 0.02,
        ...(image.boi !== undefined ? { boi_token_index: image.boi } : {}),
        ...(image.eoi !== undefined ? { eoi_token_index: image.eoi } : {}),
        ...(image.image !== undefined ? { image_token_index: image.image } : {}),
      };
      break;
    }
  }
  config = { ...config, ...ids, torch_dtype: TORCH_DTYPE[dtype], transformers_version: "4.50.0" };
  if (options.quantization) {
    const quantization = {
      group_size: options.quantization.groupSize,
      bits: options.quantization.bits,
      mode: "affine",
    };
    config.quantization = quantization;
    config.quantization_config = { ...quantization };
  }
  return sorted(config);
}
