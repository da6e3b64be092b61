/**
 * Which tensors a test model has — names and shapes exactly as the Hugging Face / mlx-lm checkpoints
 * of each family — and how each is initialized.
 *
 * Why these scales: parity tests compare greedy tokens between implementations that round
 * differently (mlx-lm computes a bf16 model in bf16; another backend may use f32). With i.i.d.
 * Gaussian weights the logits are Gaussian too, and measured with mlx-lm on the tiny models the gap
 * between the two best logits falls below 2% of the logits' spread at about 5% of steps while
 * bf16-vs-f32 rounding moves logits by about 3% of it: greedy sequences part within a few dozen
 * tokens. No choice of scale fixes that (rounding errors scale with the logits), so the models get
 * structure instead:
 *  - the token's own embedding dominates the residual stream (embedding std 1; attention and MLP
 *    outputs scaled by 1/√(2·layers), GPT-2's residual scaling; Gemma, whose post-norms fix each
 *    block's output scale, gets embeddings of std 1.5·√(2·layers/hidden) instead, which its √hidden
 *    input scaling turns into 1.5× the blocks' summed output);
 *  - an untied LM head is a fixed random permutation of the embedding rows (scaled to std 1/√hidden),
 *    so the best logit is the permuted partner of the current token, several standard deviations
 *    clear of the rest, and greedy decoding walks a long cycle of distinct ordinary tokens (never a
 *    special one); a tied head makes the current token itself the decisive winner (greedy decoding
 *    repeats it).
 * The blocks still make about half of the logits (51–60% of their norm on the tiny models, measured
 * with mlx-lm by zeroing the blocks' outputs), so a wrong attention or MLP shows in the logits.
 * Queries and keys are scaled up (2× per side; through the q/k norms where a family has them) so
 * attention is peaked and the context, not just the last token, moves the logits. Norm weights are
 * 1 ± 0.1 (Gemma stores w in its (1 + w) form: ±0.1 around 0).
 */
import type { TestModelArch, TextModelShape } from "./presets.js";

export type Init =
  | { kind: "normal"; mean: number; std: number }
  /**
   * An untied LM head: row j is a row of the embedding (regenerated from its stream) times `scale`,
   * through a random permutation of the ordinary token ids. Rows of `neverPredicted` ids are plain
   * normals of the same spread instead, so no token leads to them (greedy decoding never stops on an
   * end-of-turn token by chance); their embeddings are added to ordinary rows, so a prompt ending in one
   * still has a clear successor.
   */
  | {
      kind: "lm-head";
      embedding: string;
      embeddingInit: { mean: number; std: number };
      scale: number;
      neverPredicted: readonly number[];
    };

export interface WeightPlan {
  name: string;
  shape: number[];
  init: Init;
  /** The weight of a Linear or Embedding module: mlx-lm quantizes it when its last dim divides by the group size. */
  quantizable: boolean;
}

const NORM_JITTER = 0.1;
/** Per side; so attention scores have 4× the variance of a plain 1/√fan_in initialization. */
const QK_GAIN = 2;
const GEMMA_EMBEDDING_LEAD = 1.5;
const BIAS_STD = 0.1;

/** Vision tower of the multimodal Gemma 3 layout: one SigLIP layer, present so loaders learn to skip it. */
export interface VisionShape {
  hiddenSize: number;
  intermediateSize: number;
  heads: number;
  imageSize: number;
  patchSize: number;
  tokensPerImage: number;
}

export function visionShapeFor(textShape: TextModelShape, tiny: boolean): VisionShape {
  // The real SigLIP encoder of Gemma 3 (27 layers of these widths); we keep one layer of it.
  return tiny
    ? { hiddenSize: 128, intermediateSize: 256, heads: 2, imageSize: 56, patchSize: 14, tokensPerImage: 4 }
    : { hiddenSize: 1152, intermediateSize: 4304, heads: 16, imageSize: 896, patchSize: 14, tokensPerImage: 256 };
}

/** `neverPredicted`: token ids (the tokenizer's special tokens) an untied LM head never leads to. */
export function weightPlan(
  arch: TestModelArch,
  shape: TextModelShape,
  vision: VisionShape | null,
  neverPredicted: readonly number[] = [],
): WeightPlan[] {
  const gemma = shape.gemma !== null;
  const qkNorm = gemma || arch === "qwen3";
  const { hiddenSize: d, intermediateSize: ff, heads, kvHeads, headDim, vocabSize, layers } = shape;
  const prefix = arch === "gemma3" ? "language_model." : "";
  const plan: WeightPlan[] = [];
  const normal = (std: number, mean = 0): Init => ({ kind: "normal", mean, std });
  const add = (name: string, dims: number[], init: Init, quantizable = false) =>
    plan.push({ name: prefix + name, shape: dims, init, quantizable });
  const linear = (name: string, out: number, inputs: number, gain = 1) =>
    add(`${name}.weight`, [out, inputs], normal(gain / Math.sqrt(inputs)), true);
  // Gemma's RMSNorm multiplies by (1 + w): the same effective weights, stored 1 lower.
  const norm = (name: string, size: number, scale = 1) =>
    add(`${name}.weight`, [size], normal(scale * NORM_JITTER, gemma ? scale - 1 : scale));

  const embeddingInit = { mean: 0, std: gemma ? GEMMA_EMBEDDING_LEAD * Math.sqrt((2 * layers) / d) : 1 };
  const residualGain = gemma ? 1 : 1 / Math.sqrt(2 * layers);
  add("model.embed_tokens.weight", [vocabSize, d], normal(embeddingInit.std), true);
  for (let layer = 0; layer < layers; layer++) {
    const at = `model.layers.${layer}`;
    const qkGain = qkNorm ? 1 : QK_GAIN;
    linear(`${at}.self_attn.q_proj`, heads * headDim, d, qkGain);
    linear(`${at}.self_attn.k_proj`, kvHeads * headDim, d, qkGain);
    linear(`${at}.self_attn.v_proj`, kvHeads * headDim, d);
    linear(`${at}.self_attn.o_proj`, d, heads * headDim, residualGain);
    if (arch === "qwen2") {
      add(`${at}.self_attn.q_proj.bias`, [heads * headDim], normal(BIAS_STD));
      add(`${at}.self_attn.k_proj.bias`, [kvHeads * headDim], normal(BIAS_STD));
      add(`${at}.self_attn.v_proj.bias`, [kvHeads * headDim], normal(BIAS_STD));
    }
    if (qkNorm) {
      norm(`${at}.self_attn.q_norm`, headDim, QK_GAIN);
      norm(`${at}.self_attn.k_norm`, headDim, QK_GAIN);
    }
    linear(`${at}.mlp.gate_proj`, ff, d);
    linear(`${at}.mlp.up_proj`, ff, d);
    linear(`${at}.mlp.down_proj`, d, ff, residualGain);
    norm(`${at}.input_layernorm`, d);
    norm(`${at}.post_attention_layernorm`, d);
    if (gemma) {
      norm(`${at}.pre_feedforward_layernorm`, d);
      norm(`${at}.post_feedforward_layernorm`, d);
    }
  }
  norm("model.norm", d);
  if (!shape.tieWordEmbeddings) {
    add(
      "lm_head.weight",
      [vocabSize, d],
      {
        kind: "lm-head",
        embedding: prefix + "model.embed_tokens.weight",
        embeddingInit,
        scale: 1 / (embeddingInit.std * Math.sqrt(d)),
        neverPredicted,
      },
      true,
    );
  }
  if (vision) plan.push(...visionPlan(vision, d));
  return plan;
}

/** mlx-vlm's names for Gemma 3's SigLIP tower and projector (conv weights in MLX's OHWI order). */
function visionPlan(vision: VisionShape, textHidden: number): WeightPlan[] {
  const { hiddenSize: h, intermediateSize: ff, imageSize, patchSize } = vision;
  const patches = (imageSize / patchSize) ** 2;
  const plan: WeightPlan[] = [];
  const add = (name: string, shape: number[], std: number, mean = 0) =>
    plan.push({ name, shape, init: { kind: "normal", mean, std }, quantizable: false });
  const dense = (name: string, out: number, inputs: number) => {
    add(`${name}.weight`, [out, inputs], 1 / Math.sqrt(inputs));
    add(`${name}.bias`, [out], BIAS_STD);
  };
  const layerNorm = (name: string) => {
    add(`${name}.weight`, [h], NORM_JITTER, 1);
    add(`${name}.bias`, [h], BIAS_STD);
  };
  add("multi_modal_projector.mm_input_projection_weight", [h, textHidden], 1 / Math.sqrt(h));
  add("multi_modal_projector.mm_soft_emb_norm.weight", [h], NORM_JITTER);
  const tower = "vision_tower.vision_model";
  add(`${tower}.embeddings.patch_embedding.weight`, [h, patchSize, patchSize, 3], 1 / Math.sqrt(3 * patchSize ** 2));
  add(`${tower}.embeddings.patch_embedding.bias`, [h], BIAS_STD);
  add(`${tower}.embeddings.position_embedding.weight`, [patches, h], 1);
  const layer = `${tower}.encoder.layers.0`;
  layerNorm(`${layer}.layer_norm1`);
  for (const projection of ["q_proj", "k_proj", "v_proj", "out_proj"]) dense(`${layer}.self_attn.${projection}`, h, h);
  layerNorm(`${layer}.layer_norm2`);
  dense(`${layer}.mlp.fc1`, ff, h);
  dense(`${layer}.mlp.fc2`, h, ff);
  layerNorm(`${tower}.post_layernorm`);
  return plan;
}
