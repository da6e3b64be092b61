/**
 * Quantized KV storage on a fixture model (Gemma 3 tiny, WebGPU): what each setting costs per token and what it
 * does to the model's output, against the float cache. Stated bounds: 8-bit storage leaves greedy
 * output unchanged and the last-position logits within 2e-2 relative error (observed 0.5–0.8%); 4-bit
 * within 2e-1 (observed 7–11%: the fixture's deliberately sharp attention magnifies key rounding).
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { Backend, KvStorage } from "../../backends/contract.js";
import { createBackend } from "../../backends/registry.js";
import { relativeError } from "../../conformance/support/compare.js";
import { generateGreedy, type GreedyResult } from "../../conformance/support/greedy.js";
import type { LanguageModel } from "../../src/model/architecture.js";
import { loadModel } from "../../src/model/load.js";
import { Engine } from "../../src/engine/engine.js";
import { samplingParams } from "../../src/engine/sampling.js";
import { createLogger } from "../../src/logging.js";
import { AgentMemory } from "../../src/memory/agent-memory.js";
import { loadTokenizer, type ModelTokenizer } from "../../src/model/tokenizer.js";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { CLI, scratchDir } from "../support/cli.js";

const SETTINGS: { name: string; storage: KvStorage; logitError: number; sameTokens: boolean }[] = [
  { name: "8-bit", storage: { kind: "quantized", bits: 8, groupSize: 64 }, logitError: 2e-2, sameTokens: true },
  { name: "4-bit", storage: { kind: "quantized", bits: 4, groupSize: 64 }, logitError: 2e-1, sameTokens: false },
];

describe("quantized KV cache", () => {
  let backend: Backend;
  let model: LanguageModel;
  let prompts: number[][];
  let tokenizer: ModelTokenizer;
  let float: GreedyResult;
  const run = (storage: KvStorage) => generateGreedy(backend, model, prompts, 24, { prefillChunk: 32, storage });

  beforeAll(async () => {
    // Quantized KV groups 64 values along a head: a Gemma 3 fixture (head_dim 64, GQA, sliding window).
    const directory = join(scratchDir(), "gemma3");
    await promisify(execFile)(process.execPath, [CLI, "make-test-model", "--arch", "gemma3", "--out", directory]);
    backend = await createBackend("webgpu");
    model = (await loadModel(directory, backend, { progressStream: null })).model;
    tokenizer = await loadTokenizer(directory);
    prompts = [
      tokenizer.encode(
        "An agent's memory is its KV cache; quantized, it holds more agents in the same bytes. ".repeat(3),
      ),
      tokenizer.encode("Short prompt."),
    ];
    float = await run({ kind: "float", dtype: "f32" });
  }, 120_000);

  it("stores fewer bytes per token: f32 > f16 > 8-bit > 4-bit", () => {
    const perToken = (storage: KvStorage) => {
      const { layers, kvHeads, headDim } = model.kvGeometry;
      const cache = backend.createKvCache({ layers, kvHeads, headDim, blockSize: 16, blockCount: 1, storage });
      const bytes = cache.bytesPerBlock / 16;
      cache.dispose();
      return bytes;
    };
    const sizes = [
      perToken({ kind: "float", dtype: "f32" }),
      perToken({ kind: "float", dtype: "f16" }),
      ...SETTINGS.map((setting) => perToken(setting.storage)),
    ];
    const { layers, kvHeads, headDim } = model.kvGeometry;
    expect(sizes[0]).toBe(2 * layers * kvHeads * headDim * 4);
    expect(sizes[1]).toBe(sizes[0]! / 2);
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]!).toBeLessThan(sizes[i - 1]!);
  });

  for (const setting of SETTINGS) {
    it(`${setting.name}: logits within ${setting.logitError} of the float cache${setting.sameTokens ? ", greedy tokens identical" : ""}`, async () => {
      const quantized = await run(setting.storage);
      prompts.forEach((_, index) => {
        const error = relativeError(quantized.promptLogits[index]!, float.promptLogits[index]!);
        expect(error, `relative error ${error.toExponential(2)}`).toBeLessThanOrEqual(setting.logitError);
        expect(error).toBeGreaterThan(0); // the storage really is quantized
        if (setting.sameTokens) expect(quantized.tokens[index]).toEqual(float.tokens[index]);
      });
    });
  }

  it("8-bit: a cache reused across an agent's turns gives the uncached float output", async () => {
    const engineOptions = { maxBatchSize: 2, prefillStepSize: 32, maxContextLength: 0, kvBudgetBytes: 8 * 2 ** 20 };
    const memory = new AgentMemory({
      maxAgentsInMemory: 4,
      lruEvictionEnabled: true,
      warm: null,
      logger: createLogger("ERROR"),
    });
    const quantized = new Engine(
      backend,
      model,
      tokenizer,
      { ...engineOptions, kvStorage: SETTINGS[0]!.storage },
      memory,
    );
    const plain = new Engine(backend, model, tokenizer, {
      ...engineOptions,
      kvStorage: { kind: "float", dtype: "f32" },
    });
    const ask = async (engine: Engine, prompt: number[], withMemory: boolean) => {
      const tokens: number[] = [];
      let cached = 0;
      const request = {
        promptTokens: prompt,
        maxTokens: 12,
        sampling: samplingParams({ temperature: 0 }),
        ignoreEos: true,
      };
      for await (const event of engine.generate(
        withMemory ? { ...request, memory: { agentId: "q8", tenant: "t" } } : request,
      )) {
        if (event.type === "delta") tokens.push(...event.tokenIds);
        else if (event.type === "done") cached = event.usage.cachedTokens;
      }
      return { tokens, cached };
    };
    const turn1Prompt = prompts[0]!;
    const turn1 = await ask(quantized, turn1Prompt, true);
    expect(turn1.tokens).toEqual((await ask(plain, turn1Prompt, false)).tokens);
    const turn2Prompt = [...turn1Prompt, ...turn1.tokens, ...prompts[1]!];
    const turn2 = await ask(quantized, turn2Prompt, true);
    expect(turn2.cached).toBe(turn1Prompt.length + turn1.tokens.length);
    expect(turn2.tokens).toEqual((await ask(plain, turn2Prompt, false)).tokens);
    await quantized.dispose();
    await plain.dispose();
  }, 60_000);
});
