/**
 * Gemma 3's language model, after mlx-lm's models/gemma3_text.py (and gemma3.py for the multimodal
 * checkpoints, whose text weights carry a `language_model.` prefix that the loader strips):
 *   x = embed(tokens) · √hidden   (the factor rounded to bfloat16, as the reference does)
 *   per layer:  x += post_attention_norm(o_proj(attention(rope(q_norm(q)), rope(k_norm(k)), v)))
 *                      on input_norm(x)
 *               x += post_feedforward_norm(down(gelu_tanh(gate(h)) · up(h)))  with h = pre_feedforward_norm(x)
 *   logits = embed_tokensᵀ · norm(x)   (tied, unless the checkpoint has an lm_head)
 * Every RMSNorm multiplies by (1 + w). Five of every six layers (`sliding_window_pattern`) attend to
 * the last `sliding_window` positions with rope base `rope_local_base_freq`; the sixth is global, with
 * base `rope_theta` and the configured (linear) scaling. q·k is scaled by query_pre_attn_scalar^-½.
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
import { bfloat16ToFloat32, float32ToBfloat16 } from "./numeric.js";
import type { ModelWeights } from "./weights.js";

/**
 * Gemma's RMSNorm weight is stored as w and applied as (1 + w), formed in float32 as transformers
 * does (`1.0 + weight.float()`); mlx-lm forms it in the stored dtype, which rounds it on bf16 weights.
 */
async function gemmaNormWeight(weights: ModelWeights, backend: Backend, name: string, size: number): Promise<Tensor> {
  const { values } = await weights.float32(name, [size]);
  const onePlus = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) onePlus[i] = 1 + values[i]!;
  return weights.upload(backend, onePlus, [size], "f32");
}

interface StepContext {
  positions: Tensor;
  slots: Tensor;
  cache: KvCache;
  attention: ReturnType<Backend["prepareAttention"]>;
}

class Attention {
  constructor(
    private readonly config: ModelConfig,
    private readonly layer: number,
    private readonly projections: { q: Linear; k: Linear; v: Linear; o: Linear },
    private readonly qNorm: Tensor,
    private readonly kNorm: Tensor,
    private readonly rope: RopeOptions,
    private readonly slidingWindow: number | null,
  ) {}

  static async load(weights: ModelWeights, backend: Backend, config: ModelConfig, layer: number): Promise<Attention> {
    const prefix = `model.layers.${layer}.self_attn`;
    const { hiddenSize, heads, kvHeads, headDim } = config;
    const gemma = config.gemma!;
    const sliding = (layer + 1) % gemma.slidingWindowPattern !== 0;
    const rope = sliding
      ? ropeOptions(headDim, gemma.ropeLocalBase, false, null)
      : ropeOptions(headDim, config.ropeTheta, false, config.ropeScaling);
    return new Attention(
      config,
      layer,
      {
        q: await Linear.load(weights, backend, `${prefix}.q_proj`, hiddenSize, heads * headDim),
        k: await Linear.load(weights, backend, `${prefix}.k_proj`, hiddenSize, kvHeads * headDim),
        v: await Linear.load(weights, backend, `${prefix}.v_proj`, hiddenSize, kvHeads * headDim),
        o: await Linear.load(weights, backend, `${prefix}.o_proj`, heads * headDim, hiddenSize),
      },
      await gemmaNormWeight(weights, backend, `${prefix}.q_norm.weight`, headDim),
      await gemmaNormWeight(weights, backend, `${prefix}.k_norm.weight`, headDim),
      rope,
      sliding ? gemma.slidingWindow : null,
    );
  }

  forward(backend: Backend, x: Tensor, step: StepContext, scratch: Scratch): Tensor {
    const { heads, kvHeads, headDim, rmsNormEps } = this.config;
    const tokens = x.shape[0]!;
    const normedHeads = (projection: Linear, count: number, norm: Tensor) => {
      const flat = scratch.keep(projection.forward(backend, x, scratch));
      const normed = backend.rmsNorm(backend.reshape(flat, [tokens * count, headDim]), norm, rmsNormEps);
      return backend.reshape(scratch.keep(normed), [tokens, count, headDim]);
    };
    const q = scratch.keep(backend.rope(normedHeads(this.projections.q, heads, this.qNorm), step.positions, this.rope));
    const k = scratch.keep(
      backend.rope(normedHeads(this.projections.k, kvHeads, this.kNorm), step.positions, this.rope),
    );
    const v = backend.reshape(scratch.keep(this.projections.v.forward(backend, x, scratch)), [
      tokens,
      kvHeads,
      headDim,
    ]);
    step.cache.write(this.layer, k, v, step.slots);
    const attended = scratch.keep(
      backend.attention(q, step.cache, this.layer, step.attention, {
        scale: this.config.gemma!.queryPreAttnScalar ** -0.5,
        slidingWindow: this.slidingWindow,
      }),
    );
    return this.projections.o.forward(backend, backend.reshape(attended, [tokens, heads * headDim]), scratch);
  }

  dispose(backend: Backend): void {
    for (const linear of Object.values(this.projections)) linear.dispose(backend);
    backend.free(this.qNorm);
    backend.free(this.kNorm);
  }
}

class TransformerBlock {
  constructor(
    private readonly attention: Attention,
    private readonly mlp: GatedMlp,
    private readonly norms: {
      input: Tensor;
      postAttention: Tensor;
      preFeedforward: Tensor;
      postFeedforward: Tensor;
    },
    private readonly eps: number,
  ) {}

  static async load(
    weights: ModelWeights,
    backend: Backend,
    config: ModelConfig,
    layer: number,
  ): Promise<TransformerBlock> {
    const prefix = `model.layers.${layer}`;
    const norm = (name: string) => gemmaNormWeight(weights, backend, `${prefix}.${name}.weight`, config.hiddenSize);
    return new TransformerBlock(
      await Attention.load(weights, backend, config, layer),
      await GatedMlp.load(weights, backend, config, layer, "gelu_tanh"),
      {
        input: await norm("input_layernorm"),
        postAttention: await norm("post_attention_layernorm"),
        preFeedforward: await norm("pre_feedforward_layernorm"),
        postFeedforward: await norm("post_feedforward_layernorm"),
      },
      config.rmsNormEps,
    );
  }

  forward(backend: Backend, x: Tensor, step: StepContext): Tensor {
    const scratch = new Scratch(backend);
    const norm = (tensor: Tensor, weight: Tensor) => scratch.keep(backend.rmsNorm(tensor, weight, this.eps));
    try {
      const attended = scratch.keep(this.attention.forward(backend, norm(x, this.norms.input), step, scratch));
      const h = scratch.keep(backend.add(x, norm(attended, this.norms.postAttention)));
      const fed = scratch.keep(this.mlp.forward(backend, norm(h, this.norms.preFeedforward), scratch));
      return backend.add(h, norm(fed, this.norms.postFeedforward));
    } finally {
      scratch.release();
    }
  }

  dispose(backend: Backend): void {
    this.attention.dispose(backend);
    this.mlp.dispose(backend);
    for (const norm of Object.values(this.norms)) backend.free(norm);
  }
}

export class Gemma3Model implements LanguageModel {
  readonly kvGeometry: KvGeometry;
  private readonly embeddingScale: number;

  private constructor(
    readonly config: ModelConfig,
    private readonly backend: Backend,
    private readonly embedTokens: Matrix,
    private readonly blocks: readonly TransformerBlock[],
    private readonly norm: Tensor,
    private readonly lmHead: Matrix | null,
  ) {
    this.kvGeometry = { layers: config.layers, kvHeads: config.kvHeads, headDim: config.headDim };
    this.embeddingScale = bfloat16ToFloat32(float32ToBfloat16(Math.sqrt(config.hiddenSize)));
  }

  static requiredOps(quantized: boolean): OpName[] {
    return [...COMMON_OPS, "gelu_tanh", "scale", ...(quantized ? QUANTIZED_OPS : [])];
  }

  static async load(weights: ModelWeights, config: ModelConfig, backend: Backend): Promise<Gemma3Model> {
    const { vocabSize, hiddenSize } = config;
    const embedTokens = await weights.matrix(backend, "model.embed_tokens", vocabSize, hiddenSize);
    const blocks: TransformerBlock[] = [];
    for (let layer = 0; layer < config.layers; layer++) {
      blocks.push(await TransformerBlock.load(weights, backend, config, layer));
    }
    const norm = await gemmaNormWeight(weights, backend, "model.norm.weight", hiddenSize);
    // As mlx-lm's sanitize: the embeddings are the LM head unless the checkpoint has its own.
    const lmHead = weights.has("lm_head.weight")
      ? await weights.matrix(backend, "lm_head", vocabSize, hiddenSize)
      : null;
    return new Gemma3Model(config, backend, embedTokens, blocks, norm, lmHead);
  }

  forward(batch: ForwardBatch, cache: KvCache): Tensor {
    const backend = this.backend;
    const inputs = uploadBatch(backend, batch);
    const attention = backend.prepareAttention(batch.sequences);
    try {
      const step: StepContext = { positions: inputs.positions, slots: inputs.slots, cache, attention };
      const embedded = backend.embedding(this.embedTokens, inputs.tokens);
      const x = backend.scale(embedded, this.embeddingScale);
      backend.free(embedded);
      return runBlocksAndHead(backend, x, this.blocks, step, {
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
