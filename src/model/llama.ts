/**
 * Llama (Llama 3.x, SmolLM2) and its small variants, after mlx-lm's models/llama.py, qwen2.py and
 * qwen3.py:
 *   x = embed(tokens)
 *   per layer:  x += o_proj(attention(rope(q), rope(k), v))   on rms_norm(x)     (pre-norm)
 *               x += down_proj(silu(gate_proj(h)) · up_proj(h))  with h = rms_norm(x)
 *   logits = lm_head(rms_norm(x))   (lm_head = embed_tokens when tied)
 * qwen2 adds biases to q/k/v; qwen3 RMS-normalizes each head of q and k before rope; llama may carry
 * biases (attention_bias, mlp_bias) and llama3 rope scaling. Biases are loaded wherever the
 * checkpoint has them, as mlx-lm's Linear(bias=...) would.
 */
import type { Backend, KvCache, Matrix, OpName, RopeOptions, Tensor } from "../../backends/contract.js";
import {
  COMMON_OPS,
  GatedMlp,
  Linear,
  QUANTIZED_OPS,
  Scratch,
  freeBatch,
  freeMatrix,
  ropeOptions,
  runBlocksAndHead,
  uploadBatch,
  type ForwardBatch,
  type KvGeometry,
  type LanguageModel,
} from "./architecture.js";
import type { ModelConfig } from "./config.js";
import type { ModelWeights } from "./weights.js";

class Attention {
  constructor(
    private readonly config: ModelConfig,
    private readonly layer: number,
    private readonly qProj: Linear,
    private readonly kProj: Linear,
    private readonly vProj: Linear,
    private readonly oProj: Linear,
    /** qwen3 only: RMSNorm over each head of q and k. */
    private readonly qNorm: Tensor | null,
    private readonly kNorm: Tensor | null,
  ) {}

  static async load(weights: ModelWeights, backend: Backend, config: ModelConfig, layer: number): Promise<Attention> {
    const prefix = `model.layers.${layer}.self_attn`;
    const { hiddenSize, heads, kvHeads, headDim } = config;
    const qkvBias = config.architecture === "qwen2" ? "required" : "optional";
    const qNorm = config.architecture === "qwen3";
    return new Attention(
      config,
      layer,
      await Linear.load(weights, backend, `${prefix}.q_proj`, hiddenSize, heads * headDim, qkvBias),
      await Linear.load(weights, backend, `${prefix}.k_proj`, hiddenSize, kvHeads * headDim, qkvBias),
      await Linear.load(weights, backend, `${prefix}.v_proj`, hiddenSize, kvHeads * headDim, qkvBias),
      await Linear.load(weights, backend, `${prefix}.o_proj`, heads * headDim, hiddenSize),
      qNorm ? await weights.tensor(backend, `${prefix}.q_norm.weight`, [headDim]) : null,
      qNorm ? await weights.tensor(backend, `${prefix}.k_norm.weight`, [headDim]) : null,
    );
  }

  forward(backend: Backend, x: Tensor, step: StepContext, scratch: Scratch): Tensor {
    const { heads, kvHeads, headDim, rmsNormEps } = this.config;
    const tokens = x.shape[0]!;
    const heads3d = (tensor: Tensor, count: number) => backend.reshape(scratch.keep(tensor), [tokens, count, headDim]);
    let q = heads3d(this.qProj.forward(backend, x, scratch), heads);
    let k = heads3d(this.kProj.forward(backend, x, scratch), kvHeads);
    const v = heads3d(this.vProj.forward(backend, x, scratch), kvHeads);
    if (this.qNorm && this.kNorm) {
      const perHead = (tensor: Tensor, count: number, weight: Tensor) =>
        backend.reshape(
          scratch.keep(backend.rmsNorm(backend.reshape(tensor, [tokens * count, headDim]), weight, rmsNormEps)),
          [tokens, count, headDim],
        );
      q = perHead(q, heads, this.qNorm);
      k = perHead(k, kvHeads, this.kNorm);
    }
    q = scratch.keep(backend.rope(q, step.positions, step.rope));
    k = scratch.keep(backend.rope(k, step.positions, step.rope));
    step.cache.write(this.layer, k, v, step.slots);
    const attended = scratch.keep(
      backend.attention(q, step.cache, this.layer, step.attention, { scale: headDim ** -0.5, slidingWindow: null }),
    );
    return this.oProj.forward(backend, backend.reshape(attended, [tokens, heads * headDim]), scratch);
  }

  dispose(backend: Backend): void {
    for (const linear of [this.qProj, this.kProj, this.vProj, this.oProj]) linear.dispose(backend);
    if (this.qNorm) backend.free(this.qNorm);
    if (this.kNorm) backend.free(this.kNorm);
  }
}

interface StepContext {
  positions: Tensor;
  slots: Tensor;
  cache: KvCache;
  attention: ReturnType<Backend["prepareAttention"]>;
  rope: RopeOptions;
}

class TransformerBlock {
  constructor(
    private readonly attention: Attention,
    private readonly mlp: GatedMlp,
    private readonly inputLayernorm: Tensor,
    private readonly postAttentionLayernorm: Tensor,
    private readonly eps: number,
  ) {}

  static async load(
    weights: ModelWeights,
    backend: Backend,
    config: ModelConfig,
    layer: number,
  ): Promise<TransformerBlock> {
    const prefix = `model.layers.${layer}`;
    return new TransformerBlock(
      await Attention.load(weights, backend, config, layer),
      await GatedMlp.load(weights, backend, config, layer, "silu"),
      await weights.tensor(backend, `${prefix}.input_layernorm.weight`, [config.hiddenSize]),
      await weights.tensor(backend, `${prefix}.post_attention_layernorm.weight`, [config.hiddenSize]),
      config.rmsNormEps,
    );
  }

  /** Returns the new residual stream; everything else made here is freed. */
  forward(backend: Backend, x: Tensor, step: StepContext): Tensor {
    const scratch = new Scratch(backend);
    try {
      const normed = scratch.keep(backend.rmsNorm(x, this.inputLayernorm, this.eps));
      const h = backend.add(x, scratch.keep(this.attention.forward(backend, normed, step, scratch)));
      const normedH = scratch.keep(backend.rmsNorm(h, this.postAttentionLayernorm, this.eps));
      scratch.keep(h);
      return backend.add(h, scratch.keep(this.mlp.forward(backend, normedH, scratch)));
    } finally {
      scratch.release();
    }
  }

  dispose(backend: Backend): void {
    this.attention.dispose(backend);
    this.mlp.dispose(backend);
    backend.free(this.inputLayernorm);
    backend.free(this.postAttentionLayernorm);
  }
}

export class LlamaModel implements LanguageModel {
  readonly kvGeometry: KvGeometry;
  private readonly rope: RopeOptions;

  private constructor(
    readonly config: ModelConfig,
    private readonly backend: Backend,
    private readonly embedTokens: Matrix,
    private readonly blocks: readonly TransformerBlock[],
    private readonly norm: Tensor,
    /** null when tied: the embedding table is the LM head. */
    private readonly lmHead: Matrix | null,
  ) {
    this.kvGeometry = { layers: config.layers, kvHeads: config.kvHeads, headDim: config.headDim };
    this.rope = ropeOptions(config.headDim, config.ropeTheta, config.ropeTraditional, config.ropeScaling);
  }

  static requiredOps(quantized: boolean): OpName[] {
    return [...COMMON_OPS, "silu", ...(quantized ? QUANTIZED_OPS : [])];
  }

  static async load(weights: ModelWeights, config: ModelConfig, backend: Backend): Promise<LlamaModel> {
    const { vocabSize, hiddenSize } = config;
    const embedTokens = await weights.matrix(backend, "model.embed_tokens", vocabSize, hiddenSize);
    const blocks: TransformerBlock[] = [];
    for (let layer = 0; layer < config.layers; layer++) {
      blocks.push(await TransformerBlock.load(weights, backend, config, layer));
    }
    const norm = await weights.tensor(backend, "model.norm.weight", [hiddenSize]);
    // mlx-lm drops a stored lm_head when the config says the embeddings are tied.
    const lmHead = config.tieWordEmbeddings ? null : await weights.matrix(backend, "lm_head", vocabSize, hiddenSize);
    return new LlamaModel(config, backend, embedTokens, blocks, norm, lmHead);
  }

  forward(batch: ForwardBatch, cache: KvCache): Tensor {
    const backend = this.backend;
    const inputs = uploadBatch(backend, batch);
    const attention = backend.prepareAttention(batch.sequences);
    try {
      const step: StepContext = { positions: inputs.positions, slots: inputs.slots, cache, attention, rope: this.rope };
      return runBlocksAndHead(backend, backend.embedding(this.embedTokens, inputs.tokens), this.blocks, step, {
        logitRows: inputs.logitRows,
        norm: this.norm,
        eps: this.config.rmsNormEps,
        lmHead: this.lmHead ?? this.embedTokens,
      });
    } finally {
      attention.dispose();
      freeBatch(backend, inputs);
    }
  }

  dispose(): void {
    for (const block of this.blocks) block.dispose(this.backend);
    freeMatrix(this.backend, this.embedTokens);
    if (this.lmHead) freeMatrix(this.backend, this.lmHead);
    this.backend.free(this.norm);
  }
}
