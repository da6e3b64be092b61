/**
 * The generation engine on a real fixture model on the WebGPU backend: greedy output against mlx-lm,
 * every finish reason, stop strings across token boundaries, seeded sampling, requests joining a
 * running batch, chunked prefill interleaved with decoding, cancellation and failing forwards.
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../../backends/contract.js";
import { createBackend } from "../../backends/registry.js";
import { Engine, type EngineOptions } from "../../src/engine/engine.js";
import { PromptRejectedError, type GenerationEvent, type GenerationRequest } from "../../src/engine/events.js";
import { samplingParams } from "../../src/engine/sampling.js";
import type { LanguageModel } from "../../src/model/architecture.js";
import { loadModel } from "../../src/model/load.js";
import { loadTokenizer, type ModelTokenizer } from "../../src/model/tokenizer.js";
import { REPO_ROOT, scratchDir, testModelDirectory } from "../support/cli.js";

const run = promisify(execFile);
const GREEDY = samplingParams({ temperature: 0 });

interface Outcome {
  text: string;
  tokens: number[];
  done: Extract<GenerationEvent, { type: "done" }>;
  /** Wall-clock time of each delta, to see interleaving. */
  deltaTimes: number[];
}

async function collect(events: AsyncIterable<GenerationEvent>): Promise<Outcome> {
  let text = "";
  const tokens: number[] = [];
  const deltaTimes: number[] = [];
  for await (const event of events) {
    if (event.type === "delta") {
      text += event.text;
      tokens.push(...event.tokenIds);
      deltaTimes.push(performance.now());
    } else if (event.type === "done") {
      return { text, tokens, done: event, deltaTimes };
    }
  }
  throw new Error("the stream ended without a done event");
}

describe("generation engine", () => {
  let backend: Backend;
  let model: LanguageModel;
  let tokenizer: ModelTokenizer;
  let engine: Engine;
  let prompt: number[];
  /** mlx-lm's greedy continuation of `prompt` (the oracle). */
  let reference: number[];
  const options: EngineOptions = {
    maxBatchSize: 8,
    prefillStepSize: 32,
    maxContextLength: 0,
    kvBudgetBytes: 8 * 2 ** 20,
    kvStorage: { kind: "float", dtype: "f32" },
  };

  beforeAll(async () => {
    const directory = testModelDirectory();
    backend = await createBackend("webgpu");
    model = (await loadModel(directory, backend, { progressStream: null })).model;
    tokenizer = await loadTokenizer(directory);
    engine = new Engine(backend, model, tokenizer, options);
    prompt = tokenizer.encode("The agents kept their memory, and every turn cost only the new tokens. Once more:");
    const scratch = scratchDir();
    await writeFile(
      join(scratch, "request.json"),
      JSON.stringify({ models: [{ path: directory, prompts: [prompt], steps: 40 }] }),
    );
    await run("python3", [
      join(REPO_ROOT, "conformance/python/mlx_lm_oracle.py"),
      join(scratch, "request.json"),
      join(scratch, "result.json"),
    ]);
    const result = JSON.parse(await readFile(join(scratch, "result.json"), "utf8")) as {
      models: { sequences: { tokens: number[] }[] }[];
    };
    reference = result.models[0]!.sequences[0]!.tokens;
    // The fixture is deterministic; the tests below rely on its greedy continuation not ending the
    // turn within 40 tokens (then every finish reason below is the one the test provokes).
    expect(reference.slice(0, 40).some((token) => tokenizer.eosTokenIds.has(token))).toBe(false);
  }, 120_000);

  afterAll(async () => {
    await engine?.dispose();
    model?.dispose();
  });

  const request = (overrides: Partial<GenerationRequest> = {}): GenerationRequest => ({
    promptTokens: prompt,
    maxTokens: 24,
    sampling: GREEDY,
    ...overrides,
  });

  /** The oracle's tokens up to (and including) the first end-of-turn token. */
  const referenceUntilStop = (max: number) => {
    const end = reference.findIndex((token) => tokenizer.eosTokenIds.has(token));
    return reference.slice(0, end < 0 ? max : Math.min(max, end + 1));
  };

  it("greedy output equals mlx-lm's, and ends for the right reason", async () => {
    const outcome = await collect(engine.generate(request()));
    const expected = referenceUntilStop(24);
    expect(outcome.tokens).toEqual(expected);
    const stopped = tokenizer.eosTokenIds.has(expected.at(-1)!);
    expect(outcome.done.finishReason).toBe(stopped ? "stop" : "length");
    expect(outcome.done.usage).toEqual({
      promptTokens: prompt.length,
      cachedTokens: 0,
      generatedTokens: expected.length,
    });
    expect(outcome.text).toBe(
      tokenizer.decode(stopped ? expected.slice(0, -1) : expected, { skipSpecialTokens: true }),
    );
  });

  it("stops on a caller's stop token id with reason stop", async () => {
    const outcome = await collect(engine.generate(request({ stopTokenIds: [reference[3]!], maxTokens: 40 })));
    const at = reference.indexOf(reference[3]!);
    expect(outcome.done.finishReason).toBe("stop");
    expect(outcome.tokens).toEqual(reference.slice(0, at + 1));
  });

  it("a stop string split across tokens ends generation and never leaks", async () => {
    const full = tokenizer.decode(reference.slice(0, 16), { skipSpecialTokens: true });
    // A stop string straddling the boundary between the 6th and 7th tokens' text.
    const boundary = tokenizer.decode(reference.slice(0, 6), { skipSpecialTokens: true }).length;
    const stop = full.slice(boundary - 2, boundary + 2);
    expect(stop.length).toBe(4);
    const outcome = await collect(engine.generate(request({ stop: ["never appears ☃", stop], maxTokens: 16 })));
    expect(outcome.done.finishReason).toBe("stop_sequence");
    expect(outcome.done.stopSequence).toBe(stop);
    expect(outcome.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(outcome.text).not.toContain(stop);
  });

  it("stops at max_tokens with reason length, and at a full context with context_length", async () => {
    const short = await collect(engine.generate(request({ maxTokens: 3 })));
    expect(short.done.finishReason).toBe("length");
    expect(short.tokens).toEqual(referenceUntilStop(3));

    const small = new Engine(backend, model, tokenizer, { ...options, maxContextLength: prompt.length + 2 });
    const outcome = await collect(small.generate(request({ maxTokens: 50 })));
    await small.dispose();
    expect(outcome.done.finishReason).toBe("context_length");
    expect(outcome.tokens).toEqual(referenceUntilStop(2));
  });

  it("refuses a prompt longer than the context window before any work, naming both lengths", () => {
    const small = new Engine(backend, model, tokenizer, { ...options, maxContextLength: 16 });
    expect(() => small.generate(request())).toThrow(PromptRejectedError);
    expect(() => small.generate(request())).toThrow(
      `the prompt is ${prompt.length} tokens; the context window is 16 tokens`,
    );
    void small.dispose();
  });

  it("constrained decoding samples only what the constraint allows, through the host path", async () => {
    const vocabWords = Math.ceil(tokenizer.vocabSize / 32);
    const only = (ids: readonly number[]) => {
      const mask = new Uint32Array(vocabWords);
      for (const id of ids) mask[id >>> 5]! |= 1 << (id & 31);
      return mask;
    };
    const everything = only([...Array(tokenizer.vocabSize).keys()]);
    // Allowing every token: the host-ranked path must pick mlx-lm's greedy tokens.
    let accepted = 0;
    const free = await collect(
      engine.generate(
        request({ maxTokens: 12, constraint: { mask: () => everything, accept: () => void accepted++ } }),
      ),
    );
    expect(free.tokens).toEqual(referenceUntilStop(12));
    expect(accepted).toBe(free.tokens.length);

    // A script of three tokens the model would not choose, then only end-of-turn.
    const eos = [...tokenizer.eosTokenIds][0]!;
    const script = [reference[5]!, reference[1]!, reference[0]!, eos];
    let at = 0;
    const forced = await collect(
      engine.generate(
        request({ maxTokens: 12, constraint: { mask: () => only([script[at]!]), accept: () => void at++ } }),
      ),
    );
    expect(forced.tokens).toEqual(script);
    expect(forced.done.finishReason).toBe("stop");
  });

  it("seeded sampling is reproducible; another seed gives another sample", async () => {
    const sampled = (seed: number) =>
      collect(
        engine.generate(
          request({ sampling: samplingParams({ temperature: 1.5, seed }), maxTokens: 20, stopTokenIds: [] }),
        ),
      );
    const [first, again, other] = await Promise.all([sampled(7), sampled(7), sampled(8)]);
    expect(again.tokens).toEqual(first.tokens);
    expect(other.tokens).not.toEqual(first.tokens);
  });

  it("a request joining a running batch produces the same tokens as alone", async () => {
    const other = tokenizer.encode("A different agent asks about something else entirely, at length.");
    const alone = await collect(engine.generate(request({ promptTokens: other, maxTokens: 20 })));
    const runningEvents = engine.generate(request({ maxTokens: 40 }));
    const running = collect(runningEvents);
    // Join once the first request is decoding.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const joined = await collect(engine.generate(request({ promptTokens: other, maxTokens: 20 })));
    expect(joined.tokens).toEqual(alone.tokens);
    expect((await running).tokens).toEqual(referenceUntilStop(40));
  });

  it("keeps streaming a decoding sequence while a long prompt is prefilled in chunks", async () => {
    const long = tokenizer.encode("word ".repeat(300)).slice(0, 160); // 5 chunks of 32
    const streaming = collect(engine.generate(request({ maxTokens: 40, stopTokenIds: [], stop: [] })));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const joinedAt = performance.now();
    const prefilled = await collect(engine.generate(request({ promptTokens: long, maxTokens: 1 })));
    const firstTokenAt = joinedAt + prefilled.done.timings.timeToFirstTokenMs;
    const { deltaTimes } = await streaming;
    const duringPrefill = deltaTimes.filter((time) => time > joinedAt && time < firstTokenAt).length;
    // Five prefill chunks, each in a step that also decodes the streaming sequence.
    expect(deltaTimes.length).toBe(40);
    expect(duringPrefill).toBeGreaterThanOrEqual(4);
  });

  it("cancellation (abort or leaving the stream) frees the sequence's KV blocks", async () => {
    const before = engine.stats();
    const controller = new AbortController();
    const events = engine.generate(request({ maxTokens: 200, signal: controller.signal, stopTokenIds: [] }));
    const iterator = events[Symbol.asyncIterator]();
    // The first event (`prompt`) comes before admission; the first delta comes after blocks are held.
    let first: IteratorResult<GenerationEvent>;
    do first = await iterator.next();
    while (!first.done && first.value.type !== "delta");
    expect(engine.stats().freeKvBlocks).toBeLessThan(before.freeKvBlocks);
    controller.abort();
    let last = await iterator.next();
    while (!last.done && last.value.type !== "done") last = await iterator.next();
    expect(last.done ? null : last.value).toMatchObject({ type: "done", finishReason: "cancelled" });
    expect(engine.stats()).toEqual(before);

    // A consumer that stops reading cancels too.
    for await (const event of engine.generate(request({ maxTokens: 200, stopTokenIds: [] }))) {
      if (event.type === "delta") break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(engine.stats()).toEqual(before);
  });

  it("a failing forward fails the requests in it; the next request is served", async () => {
    let failures = 1;
    const flaky: LanguageModel = {
      config: model.config,
      kvGeometry: model.kvGeometry,
      forward: (batch, cache) => {
        if (failures-- > 0) throw new Error("device lost (simulated)");
        return model.forward(batch, cache);
      },
      dispose: () => undefined,
    };
    const withFlakyModel = new Engine(backend, flaky, tokenizer, options);
    await expect(collect(withFlakyModel.generate(request()))).rejects.toThrow(
      "generation failed: device lost (simulated)",
    );
    const next = await collect(withFlakyModel.generate(request()));
    expect(next.tokens).toEqual(referenceUntilStop(24));
    expect(withFlakyModel.stats().freeKvBlocks).toBe(withFlakyModel.stats().totalKvBlocks);
    await withFlakyModel.dispose();
  });
});
