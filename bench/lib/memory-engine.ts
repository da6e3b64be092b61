/**
 * An engine with agent memory over a cache directory, as the server builds one, for the benchmarks
 * that measure the memory's tiers: float (f16) KV, batches of up to 8, prefill chunks of 512 tokens.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../../backends/contract.js";
import { Engine } from "../../src/engine/engine.js";
import { createLogger } from "../../src/logging.js";
import { AgentMemory } from "../../src/memory/agent-memory.js";
import { fingerprintModel } from "../../src/memory/persistence.js";
import type { ModelConfig } from "../../src/model/config.js";
import { loadModel, type LoadedModel } from "../../src/model/load.js";
import { loadTokenizer, type ModelTokenizer } from "../../src/model/tokenizer.js";

/** The engine's batch and chunk sizes (the server's defaults). */
export const ENGINE_SHAPE = { maxBatchSize: 8, prefillStepSize: 512 } as const;

export interface MemoryEngineSetup {
  backend: Backend;
  model: LoadedModel["model"];
  tokenizer: ModelTokenizer;
  /** The model's directory (its id in the cache files) and its fingerprints. */
  modelDirectory: string;
  fingerprints: { weights: string; tokenizer: string };
  cacheDirectory: string;
  kvBudgetBytes: number;
}

/** The model of `directory` loaded on the backend, its tokenizer and fingerprints, and a scratch cache directory. */
export async function prepareMemoryEngine(
  directory: string,
  backend: Backend,
  kvBudgetBytes: number,
): Promise<MemoryEngineSetup & { config: ModelConfig }> {
  const { model, config } = await loadModel(directory, backend);
  return {
    backend,
    model,
    config,
    tokenizer: await loadTokenizer(directory),
    modelDirectory: directory,
    fingerprints: await fingerprintModel(directory),
    cacheDirectory: mkdtempSync(join(tmpdir(), "agent-memory-bench-")),
    kvBudgetBytes,
  };
}

/** A new memory and engine over the setup's cache directory (call again for a "restart"). */
export function openMemoryEngine(setup: MemoryEngineSetup): { memory: AgentMemory; engine: Engine } {
  const memory = new AgentMemory({
    maxAgentsInMemory: 64,
    lruEvictionEnabled: true,
    warm: {
      directory: setup.cacheDirectory,
      modelId: setup.modelDirectory,
      weightsFingerprint: setup.fingerprints.weights,
      tokenizerFingerprint: setup.fingerprints.tokenizer,
      backend: setup.backend.name,
    },
    logger: createLogger("WARNING"),
  });
  const engine = new Engine(
    setup.backend,
    setup.model,
    setup.tokenizer,
    {
      ...ENGINE_SHAPE,
      maxContextLength: 0,
      kvBudgetBytes: setup.kvBudgetBytes,
      kvStorage: { kind: "float", dtype: "f16" },
    },
    memory,
  );
  return { memory, engine };
}
