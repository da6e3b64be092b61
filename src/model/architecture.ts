/**
 * What every architecture file provides, and the pieces they share: a language model is a forward
 * pass over a ragged batch of new tokens whose K/V go into the paged cache, returning the logits of
 * the rows the caller asks for (usually the last new token of each sequence). Everything here is
 * written over the backend contract; no architecture file knows which backend runs it.
 */
import {
  isQuantized,
  type AttentionSequence,
  type Backend,
  type KvCache,
  type Matrix,
  type OpName,
  type RopeOptions,
  type Tensor,
} from "../../backends/contract.js";
import type { ModelConfig, RopeScaling } from "./config.js";
import type { ModelWeights } from "./weights.js";

/** One forward step of a ragged batch: the new tokens of every sequence, concatenated in order. */
export interface ForwardBatch {
  /** Token ids [T]. */
  tokens: Uint32Array;
  /** Absolute position of each token in its sequence [T]. */
  positions: Int32Array;
  /** KV-cache slot (block·blockSize + offset) each token's K/V is written to [T]. */
  slots: Uint32Array;
  /** The sequences, in the order their tokens appear; contextLength counts the new tokens too. */
  sequences: readonly AttentionSequence[];
  /** Rows of the batch (indexes into tokens) whose logits are returned, in this order. */
  logitRows: Uint32Array;
}

/** The geometry of the KV cache a model needs. */
export interface KvGeometry {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export interface LanguageModel {
  readonly config: ModelConfig;
  readonly kvGeometry: KvGeometry;
  /** f32 logits [logitRows.length, vocabSize]; K/V of every token is written into `cache`. */
  forward(batch: ForwardBatch, cache: KvCache): Tensor;
  dispose(): void;
}

/** Builds an architecture's model from its weights; registered by model_type in load.ts. */
export type ArchitectureBuilder = (
  weights: ModelWeights,
  config: ModelConfig,
  backend: Backend,
) => Promise<LanguageModel>;

/** Ops every architecture here uses; each file adds its own. */
export const COMMON_OPS: readonly OpName[] = [
  "embedding",
  "matmul",
  "rms_norm",
  "rope",
  "add",
  "mul",
  "attention",
  "kv_cache_float",
];

/** Ops needed to run a checkpoint stored MLX-quantized. */
export const QUANTIZED_OPS: readonly OpName[] = ["embedding_quantized", "matmul_quantized"];

/** Tensors made during one block of a forward, freed together when the block is done. */
export class Scratch {
  private readonly tensors: Tensor[] = [];
  constructor(private readonly backend: Backend) {}

  keep<T extends Tensor>(tensor: T): T {
    this.tensors.push(tensor);
    return tensor;
  }

  /** Free everything kept; work already recorded that reads these tensors stays valid. */
  release(): void {
    for (const tensor of this.tensors.splice(0)) this.backend.free(tensor);
  }
}

/** A linear layer y = x·Wᵀ (+ b): the bias is loaded when the checkpoint has one. */
export class Linear {
  private constructor(
    readonly weight: Matrix,
    readonly bias: Tensor | null,
  ) {}

  static async load(
    weights: ModelWeights,
    backend: Backend,
    module: string,
    inFeatures: number,
    outFeatures: number,
    bias: "optional" | "required" | "none" = "optional",
  ): Promise<Linear> {
    const matrix = await weights.matrix(backend, module, outFeatures, inFeatures);
    const hasBias = bias === "required" || (bias === "optional" && weights.has(`${module}.bias`));
    // Biases join activations in add, which takes f32: widen them once here.
    const biasTensor = hasBias
      ? weights.upload(backend, (await weights.float32(`${module}.bias`, [outFeatures])).values, [outFeatures], "f32")
      : null;
    return new Linear(matrix, biasTensor);
  }

  forward(backend: Backend, x: Tensor, scratch: Scratch): Tensor {
    const product = backend.matmul(x, this.weight);
    if (!this.bias) return product;
    scratch.keep(product);
    return backend.add(product, this.bias);
  }

  dispose(backend: Backend): void {
    freeMatrix(backend, this.weight);
    if (this.bias) backend.free(this.bias);
  }
}

export function freeMatrix(backend: Backend, matrix: Matrix): void {
  if (isQuantized(matrix)) {
    backend.free(matrix.weight);
    backend.free(matrix.scales);
    backend.free(matrix.biases);
  } else {
    backend.free(matrix);
  }
}

/**
 * Rope settings for one kind of layer, as mlx-lm's initialize_rope builds them: plain θ = base,
 * linear scaling (positions × 1/factor), or llama3's per-frequency smoothing computed here.
 */
export function ropeOptions(
  headDim: number,
  base: number,
  traditional: boolean,
  scaling: RopeScaling | null,
): RopeOptions {
  if (scaling?.kind === "linear") return { dims: headDim, traditional, base, scale: 1 / scaling.factor };
  if (scaling?.kind !== "llama3") return { dims: headDim, traditional, base, scale: 1 };
  // Llama 3.x: wavelengths longer than the original context are stretched by `factor`, short ones
  // are kept, and the band between is interpolated. Computed in float32 as mlx-lm does.
  const f32 = Math.fround;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling;
  const lowFreqWavelength = originalMaxPositions / lowFreqFactor;
  const highFreqWavelength = originalMaxPositions / highFreqFactor;
  const inverseFrequencies = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) {
    let period = f32(base ** f32((2 * i) / headDim));
    const wavelength = f32(2 * Math.PI * period);
    if (wavelength > lowFreqWavelength) period = f32(period * factor);
    else if (wavelength > highFreqWavelength) {
      const smooth = f32(
        f32(f32(originalMaxPositions / wavelength) - lowFreqFactor) / (highFreqFactor - lowFreqFactor),
      );
      period = f32(period / f32(f32(f32(1 - smooth) / factor) + smooth));
    }
    inverseFrequencies[i] = 1 / period;
  }
  return { dims: headDim, traditional, base, scale: 1, inverseFrequencies };
}

/** Device tensors for a batch's token ids, positions and cache slots. */
export interface BatchTensors {
  tokens: Tensor;
  positions: Tensor;
  slots: Tensor;
  logitRows: Tensor;
}

export function uploadBatch(backend: Backend, batch: ForwardBatch): BatchTensors {
  const count = batch.tokens.length;
  if (batch.positions.length !== count || batch.slots.length !== count) {
    throw new Error(`forward: ${count} tokens but ${batch.positions.length} positions and ${batch.slots.length} slots`);
  }
  for (const row of batch.logitRows) {
    if (row >= count) throw new Error(`forward: logit row ${row} is outside the batch of ${count} tokens`);
  }
  return {
    tokens: backend.upload(batch.tokens, [count], "u32"),
    positions: backend.upload(batch.positions, [count], "i32"),
    slots: backend.upload(batch.slots, [count], "u32"),
    logitRows: backend.upload(batch.logitRows, [batch.logitRows.length], "u32"),
  };
}

export function freeBatch(backend: Backend, tensors: BatchTensors): void {
  for (const tensor of [tensors.tokens, tensors.positions, tensors.slots, tensors.logitRows]) backend.free(tensor);
}

/**
 * The gated MLP of every architecture here: down(act(gate(x)) · up(x)), with SiLU (SwiGLU: Llama,
 * Qwen) or the tanh-approximated GELU (GeGLU: Gemma).
 */
export class GatedMlp {
  private constructor(
    private readonly gateProj: Linear,
    private readonly upProj: Linear,
    private readonly downProj: Linear,
    private readonly activation: "silu" | "gelu_tanh",
  ) {}

  static async load(
    weights: ModelWeights,
    backend: Backend,
    config: ModelConfig,
    layer: number,
    activation: "silu" | "gelu_tanh",
  ): Promise<GatedMlp> {
    const prefix = `model.layers.${layer}.mlp`;
    const { hiddenSize, intermediateSize } = config;
    return new GatedMlp(
      await Linear.load(weights, backend, `${prefix}.gate_proj`, hiddenSize, intermediateSize),
      await Linear.load(weights, backend, `${prefix}.up_proj`, hiddenSize, intermediateSize),
      await Linear.load(weights, backend, `${prefix}.down_proj`, intermediateSize, hiddenSize),
      activation,
    );
  }

  forward(backend: Backend, x: Tensor, scratch: Scratch): Tensor {
    const gateInput = scratch.keep(this.gateProj.forward(backend, x, scratch));
    const gate = scratch.keep(this.activation === "silu" ? backend.silu(gateInput) : backend.geluTanh(gateInput));
    const up = scratch.keep(this.upProj.forward(backend, x, scratch));
    return this.downProj.forward(backend, scratch.keep(backend.mul(gate, up)), scratch);
  }

  dispose(backend: Backend): void {
    for (const linear of [this.gateProj, this.upProj, this.downProj]) linear.dispose(backend);
  }
}

/**
 * The end of every forward here: the residual stream `x` (consumed) through the blocks in order, then
 * only the rows whose logits are wanted through the final RMSNorm and the LM head.
 */
export function runBlocksAndHead<Step>(
  backend: Backend,
  x: Tensor,
  blocks: readonly { forward(backend: Backend, x: Tensor, step: Step): Tensor }[],
  step: Step,
  head: { logitRows: Tensor; norm: Tensor; eps: number; lmHead: Matrix },
): Tensor {
  for (const block of blocks) {
    const next = block.forward(backend, x, step);
    backend.free(x);
    x = next;
  }
  const rows = backend.embedding(x, head.logitRows);
  backend.free(x);
  const normed = backend.rmsNorm(rows, head.norm, head.eps);
  backend.free(rows);
  const logits = backend.matmul(normed, head.lmHead);
  backend.free(normed);
  return logits;
}
