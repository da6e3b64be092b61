/**
 * A worker thread of ChunkPool (parallel.ts): generates chunks of planned weights on request and
 * transfers their bytes back. Runs only from the compiled dist/ (a worker loads a .js file).
 */
import { parentPort } from "node:worker_threads";
import type { WeightPlan } from "./layout.js";
import { ChunkGenerator, type WeightFormat } from "./weights.js";

interface Request {
  id: number;
  plan: WeightPlan;
  format: WeightFormat;
  seed: number;
  index: number;
}

let current: { key: string; generator: ChunkGenerator } | null = null;

parentPort!.on("message", ({ id, plan, format, seed, index }: Request) => {
  try {
    // Chunks of one weight arrive together: keep its generator (the LM head's permutation is costly).
    const key = JSON.stringify([plan.name, format, seed]);
    if (current?.key !== key) current = { key, generator: new ChunkGenerator(plan, format, seed) };
    const parts = current.generator.chunk(index);
    const buffers = [...new Set(parts.map((part) => part.buffer as ArrayBuffer))];
    parentPort!.postMessage({ id, parts }, buffers);
  } catch (error) {
    parentPort!.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
