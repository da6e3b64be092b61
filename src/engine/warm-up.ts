/**
 * Running a server's first shapes before its first request. A backend builds a kernel variant the
 * first time a shape needs it (the WebGPU GEMV, for one, takes its batch size as a pipeline
 * constant), and a step that builds kernels holds every stream in it: on an H200 the first step at
 * each new batch size took 300–380 ms (bench/engine.ts, --no-batch-warm-up), the first prompt far
 * more. The warm-up runs, through the engine's own queue, what a server meets first:
 *   - a prompt of one whole prefill chunk and a short tail, then a decode step;
 *   - 1, 2, … 8 sequences (and the largest batch, when larger) stepping together, one of them
 *     sampled (the top-k path), the others greedy (argmax).
 * Requests carry no agent, so the memory's tiers and counters never see them.
 */
import type { Engine } from "./engine.js";
import type { GenerationEvent } from "./events.js";
import { samplingParams } from "./sampling.js";

export interface WarmUpShape {
  prefillStepSize: number;
  maxBatchSize: number;
  vocabSize: number;
}

/** Batch sizes up to this one are warmed one by one (the GEMV range); beyond it only the largest. */
const SMALL_BATCHES = 8;
/** Rows in the prompt's tail chunk: a few, below the prefill attention kernel's threshold. */
const TAIL_TOKENS = 3;

export async function warmUp(engine: Engine, shape: WarmUpShape): Promise<{ seconds: number; requests: number }> {
  const started = performance.now();
  let requests = 0;
  // Any valid ids will do: the weights' work does not depend on which tokens they are.
  let next = 0;
  const tokens = (count: number) =>
    Array.from({ length: count }, () => {
      next = (next + 7919) % (shape.vocabSize - 1);
      return 1 + next;
    });
  const run = async (promptLength: number, sampled: boolean) => {
    requests++;
    const events = engine.generate({
      promptTokens: tokens(promptLength),
      maxTokens: 2,
      sampling: samplingParams(sampled ? { temperature: 1, seed: 0 } : { temperature: 0 }),
      ignoreEos: true,
    });
    await finish(events);
  };
  // Room for the prompt and its two tokens.
  await run(Math.max(1, Math.min(shape.prefillStepSize + TAIL_TOKENS, engine.contextLimit - 2)), false);
  const sizes = Array.from({ length: Math.min(shape.maxBatchSize, SMALL_BATCHES) }, (_, i) => i + 1);
  if (shape.maxBatchSize > SMALL_BATCHES) sizes.push(shape.maxBatchSize);
  for (const size of sizes) {
    await Promise.all(Array.from({ length: size }, (_, i) => run(1, i === size - 1)));
  }
  return { seconds: (performance.now() - started) / 1000, requests };
}

async function finish(events: AsyncIterable<GenerationEvent>): Promise<void> {
  for await (const event of events) if (event.type === "done") return;
  throw new Error("warm-up: the stream ended without a done event");
}
