/**
 * Greedy generation for the parity tests, over the model contract alone: several sequences run
 * together as one ragged batch, their prompts prefilled in chunks (so chunked prefill and the paged
 * cache are exercised), then decoded in lockstep. The engine does this properly later; here it only
 * has to be simple and obviously right.
 */
import type { Backend, KvStorage } from "../../backends/contract.js";
import { PagedKv } from "../../backends/kv-paging.js";
import type { ForwardBatch, LanguageModel } from "../../src/model/architecture.js";

export interface GreedyResult {
  /** Logits at each prompt's last position. */
  promptLogits: Float32Array[];
  /** Greedy tokens per sequence. */
  tokens: number[][];
}

export async function generateGreedy(
  backend: Backend,
  model: LanguageModel,
  prompts: readonly (readonly number[])[],
  steps: number,
  options: { prefillChunk: number; blockSize?: number; storage?: KvStorage },
): Promise<GreedyResult> {
  const { layers, kvHeads, headDim } = model.kvGeometry;
  const blockSize = options.blockSize ?? 16;
  const longest = Math.max(...prompts.map((prompt) => prompt.length)) + steps;
  const blockCount = prompts.length * Math.ceil(longest / blockSize) + 1;
  const cache = backend.createKvCache({
    layers,
    kvHeads,
    headDim,
    blockSize,
    blockCount,
    storage: options.storage ?? { kind: "float", dtype: "f32" },
  });
  const paging = new PagedKv(cache);
  const sequences = prompts.map(() => paging.create());
  const vocab = model.config.vocabSize;
  try {
    // One forward: for each sequence, the tokens it adds now; logits of each sequence's last row.
    const step = async (pieces: readonly (readonly number[])[]): Promise<Float32Array[]> => {
      const tokens: number[] = [];
      const positions: number[] = [];
      const slots: number[] = [];
      const attention: ForwardBatch["sequences"][number][] = [];
      const logitRows: number[] = [];
      pieces.forEach((piece, index) => {
        if (piece.length === 0) return;
        const sequence = sequences[index]!;
        const start = paging.length(sequence);
        const newSlots = paging.append(sequence, piece.length);
        attention.push({
          queryStart: tokens.length,
          queryLength: piece.length,
          contextLength: start + piece.length,
          blockTable: paging.blockTable(sequence),
        });
        piece.forEach((token, offset) => {
          tokens.push(token);
          positions.push(start + offset);
          slots.push(newSlots[offset]!);
        });
        logitRows.push(tokens.length - 1);
      });
      const batch: ForwardBatch = {
        tokens: Uint32Array.from(tokens),
        positions: Int32Array.from(positions),
        slots: Uint32Array.from(slots),
        sequences: attention,
        logitRows: Uint32Array.from(logitRows),
      };
      const logits = model.forward(batch, cache);
      const values = (await backend.read(logits)) as Float32Array;
      backend.free(logits);
      return logitRows.map((_, row) => values.slice(row * vocab, (row + 1) * vocab));
    };

    // Prefill: chunk by chunk; each sequence contributes its next chunk until its prompt is in.
    const promptLogits: Float32Array[] = new Array(prompts.length);
    for (let offset = 0; offset < longest - steps; offset += options.prefillChunk) {
      const pieces = prompts.map((prompt) => prompt.slice(offset, offset + options.prefillChunk));
      const rows = await step(pieces);
      let row = 0;
      pieces.forEach((piece, index) => {
        if (piece.length === 0) return;
        const logits = rows[row++]!;
        if (offset + piece.length === prompts[index]!.length) promptLogits[index] = logits;
      });
    }
    const tokens = prompts.map(() => [] as number[]);
    let current = promptLogits;
    for (let i = 0; i < steps; i++) {
      const next = current.map((logits) => argmax(logits));
      next.forEach((token, index) => tokens[index]!.push(token));
      if (i + 1 < steps) current = await step(next.map((token) => [token]));
    }
    return { promptLogits, tokens };
  } finally {
    cache.dispose();
  }
}

/** Index of the largest value, lowest index on ties (as numpy and MLX argmax). */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
