/**
 * Test-model weights generated on worker threads. A chunk's bytes depend only on (weight, chunk
 * index, seed) — every row has its own random stream — so chunks can be made anywhere and written in
 * order: the same bytes as tensorChunks() on one thread. One thread made ~5 MB/s of a 4-bit model on
 * an H200's host, 15 minutes for the 8B preset; the benchmarks there need it in one or two.
 *
 * Workers load chunk-worker.js, which exists only in the compiled dist/: from the TypeScript sources
 * (the test runner), `create` returns null and generation stays on the calling thread.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { WeightPlan } from "./layout.js";
import { chunkLayout, type WeightFormat } from "./weights.js";

interface Reply {
  id: number;
  parts?: Uint8Array[];
  error?: string;
}

interface Pending {
  resolve: (parts: Uint8Array[]) => void;
  reject: (error: Error) => void;
}

export class ChunkPool {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private next = 0;
  private failure: Error | null = null;

  private constructor(private readonly workers: Worker[]) {
    for (const worker of workers) {
      worker.on("message", (reply: Reply) => this.settle(reply));
      worker.on("error", (error) => this.fail(error));
      worker.on("exit", (code) => {
        if (code !== 0) this.fail(new Error(`test-model worker exited with code ${code}`));
      });
    }
  }

  /** A pool of `threads` workers (default: the cores but one, at most 8), or null from the sources. */
  static create(threads = Math.min(8, availableParallelism() - 1)): ChunkPool | null {
    const url = new URL("./chunk-worker.js", import.meta.url);
    if (!import.meta.url.endsWith(".js") || threads < 1) return null;
    return new ChunkPool(Array.from({ length: threads }, () => new Worker(url)));
  }

  /** `plan`'s chunks in order, several generated at once. */
  async *chunks(plan: WeightPlan, format: WeightFormat, seed: number): AsyncGenerator<Uint8Array[]> {
    const { chunks } = chunkLayout(plan);
    const ahead = 2 * this.workers.length;
    const queued: Promise<Uint8Array[]>[] = [];
    let issued = 0;
    const issue = () => {
      while (issued < chunks && queued.length < ahead) {
        const request = this.request(plan, format, seed, issued++);
        request.catch(() => undefined); // awaited in order below
        queued.push(request);
      }
    };
    issue();
    while (queued.length > 0) {
      const parts = await queued.shift()!;
      issue();
      yield parts;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private request(plan: WeightPlan, format: WeightFormat, seed: number, index: number): Promise<Uint8Array[]> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      // Round robin: chunks of one weight spread over every worker.
      const worker = this.workers[this.next++ % this.workers.length]!;
      worker.postMessage({ id, plan, format, seed, index });
    });
  }

  private settle(reply: Reply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    if (reply.parts) pending.resolve(reply.parts);
    else pending.reject(new Error(`test-model worker: ${reply.error ?? "no reply"}`));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}
