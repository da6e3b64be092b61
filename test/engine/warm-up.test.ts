/**
 * The engine's warm-up on the fixture model and the WebGPU backend: after it, batches of several
 * sequences build no kernel of their own (without it they do: the control below), its requests leave
 * no trace in the agent memory, and output afterwards is what it would have been.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebGpuBackend } from "../../backends/webgpu/backend.js";
import { Engine, type EngineOptions } from "../../src/engine/engine.js";
import type { GenerationEvent } from "../../src/engine/events.js";
import { samplingParams } from "../../src/engine/sampling.js";
import { warmUp } from "../../src/engine/warm-up.js";
import { createLogger } from "../../src/logging.js";
import { AgentMemory } from "../../src/memory/agent-memory.js";
import type { LanguageModel } from "../../src/model/architecture.js";
import { loadModel } from "../../src/model/load.js";
import { loadTokenizer, type ModelTokenizer } from "../../src/model/tokenizer.js";
import { testModelDirectory } from "../support/cli.js";

const options: EngineOptions = {
  maxBatchSize: 8,
  prefillStepSize: 32,
  maxContextLength: 0,
  kvBudgetBytes: 8 * 2 ** 20,
  kvStorage: { kind: "float", dtype: "f16" },
};

async function tokensOf(events: AsyncIterable<GenerationEvent>): Promise<number[]> {
  const tokens: number[] = [];
  for await (const event of events) {
    if (event.type === "delta") tokens.push(...event.tokenIds);
    else if (event.type === "done") return tokens;
  }
  throw new Error("the stream ended without a done event");
}

/** Each engine on a backend of its own: kernels are built per device. */
async function openEngine(memory: AgentMemory | null = null) {
  const directory = testModelDirectory();
  const backend = await WebGpuBackend.create();
  const model = (await loadModel(directory, backend, { progressStream: null })).model;
  const tokenizer = await loadTokenizer(directory);
  return { backend, model, tokenizer, engine: new Engine(backend, model, tokenizer, options, memory) };
}

describe("engine warm-up", () => {
  const opened: { engine: Engine; model: LanguageModel; backend: WebGpuBackend }[] = [];
  let tokenizer: ModelTokenizer;
  let prompt: number[];

  beforeAll(async () => {
    tokenizer = await loadTokenizer(testModelDirectory());
    prompt = tokenizer.encode("Every agent keeps its memory between turns.");
  });

  afterAll(async () => {
    for (const { engine, model, backend } of opened) {
      await engine.dispose();
      model.dispose();
      backend.dispose();
    }
  });

  /** Five sequences decoding together, one of them sampled. */
  const batch = (engine: Engine) =>
    Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        tokensOf(
          engine.generate({
            promptTokens: [...prompt, i + 1],
            maxTokens: 4,
            sampling: samplingParams(i === 4 ? { temperature: 0.8, seed: 3 } : { temperature: 0 }),
            ignoreEos: true,
          }),
        ),
      ),
    );
  const single = (engine: Engine) =>
    tokensOf(engine.generate({ promptTokens: prompt, maxTokens: 4, sampling: samplingParams({ temperature: 0 }) }));

  it("builds every kernel a batch of sequences needs, which a single request does not", async () => {
    // Control: one sequence's request builds the kernels of one row; a batch then needs more.
    const cold = await openEngine();
    opened.push(cold);
    await single(cold.engine);
    const afterSingle = cold.backend.runtime.kernels.pipelineCount;
    const coldOutputs = await batch(cold.engine);
    expect(cold.backend.runtime.kernels.pipelineCount).toBeGreaterThan(afterSingle);

    const warm = await openEngine();
    opened.push(warm);
    const { seconds, requests } = await warmUp(warm.engine, {
      prefillStepSize: options.prefillStepSize,
      maxBatchSize: options.maxBatchSize,
      vocabSize: warm.model.config.vocabSize,
    });
    expect(seconds).toBeGreaterThan(0);
    expect(requests).toBe(1 + (8 * 9) / 2); // a prompt, then batches of 1…8
    const afterWarmUp = warm.backend.runtime.kernels.pipelineCount;
    await single(warm.engine);
    const warmOutputs = await batch(warm.engine);
    expect(warm.backend.runtime.kernels.pipelineCount).toBe(afterWarmUp);
    // And the warm-up changed nothing about the output (greedy rows and the seeded sampled one).
    expect(warmOutputs).toEqual(coldOutputs);
  }, 120_000);

  it("leaves no trace in the agent memory", async () => {
    const memory = new AgentMemory({
      maxAgentsInMemory: 8,
      lruEvictionEnabled: true,
      warm: null,
      logger: createLogger("ERROR"),
    });
    const withMemory = await openEngine(memory);
    opened.push(withMemory);
    await warmUp(withMemory.engine, {
      prefillStepSize: options.prefillStepSize,
      maxBatchSize: 3,
      vocabSize: withMemory.model.config.vocabSize,
    });
    const stats = memory.stats();
    expect(stats.requests).toBe(0);
    expect(stats.hotAgents).toBe(0);
    // Every block it used is free again.
    expect(withMemory.engine.stats().freeKvBlocks).toBe(withMemory.engine.stats().totalKvBlocks);
  }, 120_000);
});
