/**
 * The fixture of the agent-memory tests: the tiny model on WebGPU, engines with memory over scratch
 * cache directories, an uncached engine as the output oracle, and the K/V oracle — an agent's blocks,
 * read from the file its eviction writes, against the blocks of an uncached run of the same tokens.
 * Call `useMemoryFixture()` inside a `describe`: it loads the model before the tests and disposes of
 * every engine after them.
 */
import { join } from "node:path";
import { afterAll, beforeAll, expect } from "vitest";
import type { Backend, KvStorage } from "../../backends/contract.js";
import { createBackend } from "../../backends/registry.js";
import { Engine, type EngineOptions } from "../../src/engine/engine.js";
import type { GenerationEvent } from "../../src/engine/events.js";
import type { MemoryScope } from "../../src/engine/kv-memory.js";
import { samplingParams } from "../../src/engine/sampling.js";
import { createLogger } from "../../src/logging.js";
import type { LanguageModel } from "../../src/model/architecture.js";
import { loadModel } from "../../src/model/load.js";
import { SafetensorsFile } from "../../src/model/safetensors.js";
import { loadTokenizer, type ModelTokenizer } from "../../src/model/tokenizer.js";
import { AgentMemory } from "../../src/memory/agent-memory.js";
import { AgentStore, fingerprintModel } from "../../src/memory/persistence.js";
import { scratchDir, testModelDirectory } from "./cli.js";

const GREEDY = samplingParams({ temperature: 0 });
const FLOAT: KvStorage = { kind: "float", dtype: "f32" };
/** How far (relative to a block's largest value) a cached block may be from an uncached run's. */
const KV_TOLERANCE = 1e-5;

export interface Turn {
  tokens: number[];
  cached: number;
}

/** An agent's token ids and full blocks (f32), as its file holds them. */
export interface HeldKv {
  tokens: number[];
  blocks: Float32Array[];
}

async function collect(events: AsyncIterable<GenerationEvent>): Promise<Turn> {
  const tokens: number[] = [];
  for await (const event of events) {
    if (event.type === "delta") tokens.push(...event.tokenIds);
    else if (event.type === "done") return { tokens, cached: event.usage.cachedTokens };
  }
  throw new Error("no done event");
}

/** Every full block of `held` within the blocks of `expected`, up to f32 rounding. */
export function expectSameBlocks(held: Float32Array[], expected: Float32Array[]): void {
  expect(held.length).toBeGreaterThanOrEqual(2);
  expect(expected.length).toBeGreaterThanOrEqual(held.length);
  held.forEach((block, i) => {
    const want = expected[i]!;
    let largest = 0;
    let worst = 0;
    for (let j = 0; j < want.length; j++) {
      largest = Math.max(largest, Math.abs(want[j]!));
      worst = Math.max(worst, Math.abs(block[j]! - want[j]!));
    }
    expect(worst, `block ${i}: largest difference ${worst} of values up to ${largest}`).toBeLessThanOrEqual(
      KV_TOLERANCE * largest,
    );
  });
}

export function useMemoryFixture() {
  let backend: Backend;
  let model: LanguageModel;
  let tokenizer: ModelTokenizer;
  let directory: string;
  let fingerprints: { weights: string; tokenizer: string };
  let system: number[] = [];
  const logger = createLogger("ERROR");
  const base: EngineOptions = {
    maxBatchSize: 4,
    prefillStepSize: 64,
    maxContextLength: 0,
    kvBudgetBytes: 4 * 2 ** 20,
    kvStorage: FLOAT,
  };
  const engines: Engine[] = [];

  beforeAll(async () => {
    directory = testModelDirectory();
    backend = await createBackend("webgpu");
    model = (await loadModel(directory, backend, { progressStream: null })).model;
    tokenizer = await loadTokenizer(directory);
    fingerprints = await fingerprintModel(directory);
    system = text("You are a careful agent. Tools: read_file, write_file, run_tests. Keep answers short and exact.");
  }, 120_000);
  afterAll(async () => {
    for (const engine of engines) await engine.dispose();
    model?.dispose();
  });

  const text = (words: string) => tokenizer.encode(words, { addSpecialTokens: false });

  function engineWith(
    options: Partial<EngineOptions> & {
      cacheDir?: string;
      maxAgents?: number;
      snapshotBatchBytes?: number;
      snapshotKeepBytes?: number;
    } = {},
  ) {
    const memory = new AgentMemory({
      maxAgentsInMemory: options.maxAgents ?? 10,
      lruEvictionEnabled: true,
      warm: options.cacheDir
        ? {
            directory: options.cacheDir,
            modelId: directory,
            weightsFingerprint: fingerprints.weights,
            tokenizerFingerprint: fingerprints.tokenizer,
            backend: backend.name,
          }
        : null,
      logger,
      snapshotBatchBytes: options.snapshotBatchBytes,
      snapshotKeepBytes: options.snapshotKeepBytes,
    });
    const engine = new Engine(backend, model, tokenizer, { ...base, ...options }, memory);
    engines.push(engine);
    return { engine, memory };
  }

  /** Bytes of one 16-token f32 KV block of the fixture model. */
  const blockBytes = () => {
    const { layers, kvHeads, headDim } = model.kvGeometry;
    return 2 * layers * kvHeads * headDim * 16 * 4;
  };

  const ask = (engine: Engine, scope: MemoryScope | undefined, prompt: number[], maxTokens = 12) =>
    collect(engine.generate({ promptTokens: prompt, maxTokens, sampling: GREEDY, ignoreEos: true, memory: scope }));

  /** The same request on an engine without memory: what any cached run must reproduce. */
  let plain: Engine | undefined;
  const reference = async (prompt: number[], maxTokens = 12) => {
    plain ??= (() => {
      const engine = new Engine(backend, model, tokenizer, base);
      engines.push(engine);
      return engine;
    })();
    return (await ask(plain, undefined, prompt, maxTokens)).tokens;
  };

  /** The token ids and full blocks (f32) of an agent's file. */
  const fileKv = async (cacheDir: string, tenant: string, agentId: string): Promise<HeldKv> => {
    const file = await SafetensorsFile.open(join(cacheDir, AgentStore.fileName(tenant, agentId)));
    try {
      const tokens = [...new Uint32Array((await file.read("tokens")).buffer)];
      const blocks: Float32Array[] = [];
      for (let i = 0; i < Math.floor(tokens.length / 16); i++) {
        blocks.push(new Float32Array((await file.read(`block.${i}`)).buffer));
      }
      return { tokens, blocks };
    } finally {
      await file.close();
    }
  };

  /**
   * What an agent holds, read from the file its eviction writes: its token ids, and its full blocks as
   * f32 (the last, partial block's unused rows hold whatever the block held before, so it is left out).
   */
  const heldKv = async (memory: AgentMemory, cacheDir: string, tenant: string, agentId: string) => {
    expect(await memory.evictAgent(tenant, agentId)).toBe(true);
    return fileKv(cacheDir, tenant, agentId);
  };

  /**
   * What a fresh engine with memory holds after answering `prompt` from nothing (every prompt token
   * prefilled), read back as `heldKv` does.
   */
  const uncachedKv = async (prompt: number[], maxTokens = 12) => {
    const cacheDir = scratchDir();
    const { engine, memory } = engineWith({ cacheDir });
    await ask(engine, { agentId: "uncached", tenant: "oracle" }, prompt, maxTokens);
    return heldKv(memory, cacheDir, "oracle", "uncached");
  };

  /**
   * The oracle for where an agent's K/V came from. The fixture model's greedy output barely depends
   * on its context, so equal output would not show a block out of place; the K/V itself does. A fresh
   * engine prefills `prompt` with no cache and answers it, and every full block the agent holds must
   * match that run's block at the same position, up to f32 rounding (the two runs split the work into
   * different chunks). A misplaced, stale or duplicated block differs by the size of the values.
   */
  const expectKvOfUncachedRun = async (held: HeldKv, prompt: number[], maxTokens = 12) => {
    const expected = await uncachedKv(prompt, maxTokens);
    expect(held.tokens).toEqual(expected.tokens);
    expectSameBlocks(held.blocks, expected.blocks);
  };

  return {
    engineWith,
    blockBytes,
    ask,
    reference,
    fileKv,
    heldKv,
    uncachedKv,
    expectKvOfUncachedRun,
    text,
    /** The system prompt every agent of these tests starts with (after the model has loaded). */
    system: () => system,
  };
}
