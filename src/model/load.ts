/**
 * Loading a model directory onto a backend: config.json → the architecture registered for its
 * model_type → weights streamed tensor by tensor. Fails before touching the device when the backend
 * lacks an op the model needs, and reports how long the load took.
 */
import { requireOps, type Backend, type OpName } from "../../backends/contract.js";
import type { ArchitectureBuilder, LanguageModel } from "./architecture.js";
import { readModelConfig, type Architecture, type ModelConfig } from "./config.js";
import { Gemma3Model } from "./gemma3.js";
import { LlamaModel } from "./llama.js";
import { ModelWeights, type WeightLoadOptions } from "./weights.js";

interface ArchitectureEntry {
  build: ArchitectureBuilder;
  requiredOps(quantized: boolean): OpName[];
}

const LLAMA: ArchitectureEntry = {
  build: (weights, config, backend) => LlamaModel.load(weights, config, backend),
  requiredOps: (quantized) => LlamaModel.requiredOps(quantized),
};

/** One entry per architecture file; a new architecture (e.g. DeepSeek-V2) registers here. */
const ARCHITECTURES: Record<Architecture, ArchitectureEntry> = {
  llama: LLAMA,
  qwen2: LLAMA,
  qwen3: LLAMA,
  gemma3: {
    build: (weights, config, backend) => Gemma3Model.load(weights, config, backend),
    requiredOps: (quantized) => Gemma3Model.requiredOps(quantized),
  },
};

export interface LoadedModel {
  model: LanguageModel;
  config: ModelConfig;
  /** Seconds from opening the files to the last tensor on the backend. */
  loadSeconds: number;
  /** Bytes of weights read from disk. */
  bytes: number;
  /** Checkpoint tensors the architecture did not use (reported, not an error: mlx-lm drops some too). */
  unusedTensors: string[];
}

export async function loadModel(
  directory: string,
  backend: Backend,
  options: WeightLoadOptions = {},
): Promise<LoadedModel> {
  const started = performance.now();
  const config = await readModelConfig(directory);
  const entry = ARCHITECTURES[config.architecture];
  requireOps(backend, entry.requiredOps(config.quantization !== null));
  const weights = await ModelWeights.open(directory, config, options);
  try {
    const model = await entry.build(weights, config, backend).catch((error: unknown) => {
      weights.discardUploads();
      throw error;
    });
    await backend.flush();
    weights.finish();
    return {
      model,
      config,
      loadSeconds: (performance.now() - started) / 1000,
      bytes: weights.loadedBytes,
      unusedTensors: weights.unusedTensors(),
    };
  } finally {
    await weights.close();
  }
}
