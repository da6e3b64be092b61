/**
 * One sequence generated greedily over the model contract, timed the way mlx-lm's stream_generate
 * times its own: prefill is the time from the start until the first generated token is on the host
 * (the prompt's forward and the first argmax), decode the time from the first generated token to the
 * last. The argmax runs on the device, so a step reads back one u32, not a row of logits.
 */
import type { Backend, KvStorage } from "../../backends/contract.js";
import { PagedKv } from "../../backends/kv-paging.js";
import type { LanguageModel } from "../../src/model/architecture.js";

export interface GreedyTimingOptions {
  /** Prompt tokens per forward during prefill (mlx-lm's prefill_step_size); the whole prompt by default. */
  prefillChunk?: number;
  blockSize?: number;
  storage: KvStorage;
}

export interface GreedyTiming {
  promptTokens: number;
  /** Start → first generated token on the host. */
  prefillSeconds: number;
  /** First generated token → last. */
  decodeSeconds: number;
  /** The generated tokens (the first comes from the prefill). */
  tokens: number[];
}

export async function timeGreedy(
  backend: Backend,
  model: LanguageModel,
  prompt: readonly number[],
  generate: number,
  options: GreedyTimingOptions,
): Promise<GreedyTiming> {
  if (prompt.length === 0 || generate < 1) throw new Error("timeGreedy: needs a prompt and at least one token");
  const { layers, kvHeads, headDim } = model.kvGeometry;
  const blockSize = options.blockSize ?? 16;
  const chunk = options.prefillChunk ?? prompt.length;
  const cache = backend.createKvCache({
    layers,
    kvHeads,
    headDim,
    blockSize,
    blockCount: Math.ceil((prompt.length + generate) / blockSize),
    storage: options.storage,
  });
  const paging = new PagedKv(cache);
  const sequence = paging.create();

  // One forward of `tokens` appended to the sequence; the argmax of its last row, still on the device.
  const forward = (tokens: readonly number[]) => {
    const start = paging.length(sequence);
    const slots = paging.append(sequence, tokens.length);
    const logits = model.forward(
      {
        tokens: Uint32Array.from(tokens),
        positions: Int32Array.from(tokens, (_, offset) => start + offset),
        slots,
        sequences: [
          {
            queryStart: 0,
            queryLength: tokens.length,
            contextLength: start + tokens.length,
            blockTable: paging.blockTable(sequence),
          },
        ],
        logitRows: Uint32Array.of(tokens.length - 1),
      },
      cache,
    );
    const best = backend.argmax(logits);
    backend.free(logits);
    return best;
  };
  const nextToken = async (tokens: readonly number[]): Promise<number> => {
    const best = forward(tokens);
    const [token] = (await backend.read(best)) as Uint32Array;
    backend.free(best);
    return token!;
  };

  try {
    const started = performance.now();
    // Every chunk but the last is evaluated without reading anything, as mlx-lm evaluates its cache.
    let offset = 0;
    for (; prompt.length - offset > chunk; offset += chunk) {
      backend.free(forward(prompt.slice(offset, offset + chunk)));
      await backend.flush();
    }
    const tokens = [await nextToken(prompt.slice(offset))];
    const firstToken = performance.now();
    while (tokens.length < generate) tokens.push(await nextToken([tokens.at(-1)!]));
    const finished = performance.now();
    return {
      promptTokens: prompt.length,
      prefillSeconds: (firstToken - started) / 1000,
      decodeSeconds: (finished - firstToken) / 1000,
      tokens,
    };
  } finally {
    cache.dispose();
  }
}
