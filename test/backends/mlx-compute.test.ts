/**
 * The MLX backend's compute thread and memory: the event loop keeps running while MLX evaluates,
 * thousands of forwards leave memory where it was, dropped tensors are released by their finalizers,
 * and the memory limits and figures are MLX's own.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { beforeAll, describe, expect, it } from "vitest";
import type { KvCache, QuantizedMatrix, Tensor } from "../../backends/contract.js";
import { PagedKv } from "../../backends/kv-paging.js";
import { mlxExpected } from "../../backends/mlx/addon.js";
import { MlxBackend, memoryLimitsFromBudget } from "../../backends/mlx/backend.js";
import * as oracle from "../../conformance/oracle/matmul.js";
import { random } from "../../conformance/support/random.js";
import { uploadQuantizedMatrix } from "../../conformance/support/weights.js";

setFlagsFromString("--expose-gc");
const collectGarbage = runInNewContext("gc") as () => void;

/** Collect, then let the finalization callbacks that collection scheduled run. */
async function collectAndFinalize(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    collectGarbage();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const [HIDDEN, HEADS, HEAD_DIM, VOCAB] = [128, 2, 64, 512];

/** A one-layer model's decode step over the contract: every kind of op and a KV write and read. */
class TinyModel {
  readonly embed: QuantizedMatrix;
  readonly project: QuantizedMatrix;
  readonly norm: Tensor;
  readonly cache: KvCache;
  readonly kv: PagedKv;

  constructor(readonly backend: MlxBackend) {
    const rng = random("mlx tiny model");
    const quantized = (rows: number, cols: number) =>
      uploadQuantizedMatrix(
        backend,
        oracle.quantize(rng.normals(rows * cols, 0.5), rows, cols, 4, 64, "bf16"),
        rows,
        cols,
        4,
        64,
        "bf16",
      );
    this.embed = quantized(VOCAB, HIDDEN);
    this.project = quantized(HIDDEN, HIDDEN);
    this.norm = backend.upload(rng.floats(HIDDEN, 1), [HIDDEN], "f32", "weights");
    this.cache = backend.createKvCache({
      layers: 1,
      kvHeads: HEADS,
      headDim: HEAD_DIM,
      blockSize: 16,
      blockCount: 64,
      storage: { kind: "quantized", bits: 8, groupSize: 64 },
    });
    this.kv = new PagedKv(this.cache);
  }

  dispose(): void {
    for (const matrix of [this.embed, this.project]) {
      for (const tensor of [matrix.weight, matrix.scales, matrix.biases]) this.backend.free(tensor);
    }
    this.backend.free(this.norm);
    this.cache.dispose();
  }

  /** One token through the layer; frees everything it made; the next token id. */
  async step(sequence: number, token: number): Promise<number> {
    const { backend } = this;
    const made: Tensor[] = [];
    const keep = <T extends Tensor>(tensor: T): T => (made.push(tensor), tensor);
    const position = this.kv.length(sequence);
    const slots = keep(backend.upload(this.kv.append(sequence, 1), [1], "u32"));
    const ids = keep(backend.upload(Uint32Array.of(token), [1], "u32"));
    const positions = keep(backend.upload(Int32Array.of(position), [1], "i32"));
    const x = keep(backend.rmsNorm(keep(backend.embedding(this.embed, ids)), this.norm, 1e-6));
    const heads = keep(backend.reshape(keep(backend.matmul(x, this.project)), [1, HEADS, HEAD_DIM]));
    const rotated = keep(backend.rope(heads, positions, { dims: HEAD_DIM, traditional: false, base: 10000, scale: 1 }));
    this.cache.write(0, rotated, heads, slots);
    const batch = backend.prepareAttention([
      { queryStart: 0, queryLength: 1, contextLength: position + 1, blockTable: this.kv.blockTable(sequence) },
    ]);
    const attended = keep(backend.attention(rotated, this.cache, 0, batch, { scale: 0.125, slidingWindow: null }));
    const hidden = keep(backend.reshape(attended, [1, HIDDEN]));
    const gated = keep(backend.mul(keep(backend.silu(hidden)), x));
    const logits = keep(backend.matmul(gated, this.embed));
    const next = (await backend.read(keep(backend.argmax(keep(backend.softmax(logits))))))[0]!;
    batch.dispose();
    for (const tensor of made) backend.free(tensor);
    return next;
  }
}

if (mlxExpected()) describeMlx();
else {
  describe("MLX unavailable here", () => {
    it("says why when asked for", async () => {
      await expect(MlxBackend.create()).rejects.toThrow("the MLX backend is unavailable");
    });
  });
}

function describeMlx(): void {
  describe("MLX compute thread and memory", () => {
    let backend: MlxBackend;
    beforeAll(async () => {
      backend = await MlxBackend.create();
    });

    it("keeps the event loop running while MLX evaluates a large graph", async () => {
      const size = 512;
      const rng = random("mlx event loop");
      const w = backend.upload(rng.normals(size * size, 1 / Math.sqrt(size)), [size, size], "f32", "weights");
      let x = backend.upload(rng.normals(size * size), [size, size], "f32");
      const made = [x];
      for (let i = 0; i < 12; i++) made.push((x = backend.matmul(x, w)));
      // Recording the graph returned at once; timers keep firing until the read settles.
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const pending = backend.read(x);
      let settled = false;
      void pending.then(() => (settled = true));
      await new Promise((resolve) => setTimeout(resolve, 0));
      expect(settled).toBe(false);
      const values = await pending;
      clearInterval(timer);
      expect(values.length).toBe(size * size);
      expect(ticks).toBeGreaterThan(2);
      for (const tensor of [...made, w]) backend.free(tensor);
    });

    it("runs 2,000 decode steps with live arrays and MLX memory back where they started", async () => {
      const model = new TinyModel(backend);
      const steps = async (count: number) => {
        for (let turn = 0; turn < count / 100; turn++) {
          const sequence = model.kv.create();
          let token = turn % VOCAB;
          for (let i = 0; i < 100; i++) token = await model.step(sequence, token);
          model.kv.free(sequence);
        }
        await backend.flush();
      };
      await steps(200); // warm-up: MLX's buffer cache and our rope tables settle
      const arraysBefore = backend.liveArrays();
      const activeBefore = backend.memory().activeBytes;
      await steps(2000);
      expect(backend.liveArrays()).toBe(arraysBefore);
      // Same tensors alive, so the same bytes; a leak of one small tensor per step would add 2,000 × ≥ 4 B.
      expect(backend.memory().activeBytes).toBe(activeBefore);
      model.dispose();
    }, 120_000);

    it("releases tensors that are dropped without free() once they are collected", async () => {
      await backend.flush();
      const before = backend.liveArrays();
      const x = backend.upload(new Float32Array(4096).fill(1), [64, 64], "f32");
      (() => {
        for (let i = 0; i < 500; i++) backend.scale(x, i); // results dropped, never freed
      })();
      await backend.flush();
      expect(backend.liveArrays()).toBe(before + 501);
      await collectAndFinalize();
      await backend.flush();
      expect(backend.liveArrays()).toBe(before + 1);
      backend.free(x);
      await backend.flush();
      expect(backend.liveArrays()).toBe(before);
    });

    it("reports weights, KV cache and MLX's active, peak and cache memory; applies limits from a budget", async () => {
      const start = backend.memory();
      const weights = backend.upload(new Float32Array(1 << 20), [1024, 1024], "f32", "weights");
      const cache = backend.createKvCache({
        layers: 2,
        kvHeads: 2,
        headDim: 64,
        blockSize: 16,
        blockCount: 32,
        storage: { kind: "float", dtype: "f16" },
      });
      await backend.flush();
      const report = backend.memory();
      expect(report.weightsBytes - start.weightsBytes).toBe(4 << 20);
      expect(report.kvCacheBytes - start.kvCacheBytes).toBe(cache.bytesPerBlock * 32);
      expect(cache.bytesPerBlock).toBe(2 * 2 * 16 * 2 * 64 * 2);
      expect(report.activeBytes - start.activeBytes).toBeGreaterThanOrEqual((4 << 20) + cache.bytesPerBlock * 32);
      expect(report.peakBytes).toBeGreaterThanOrEqual(report.activeBytes);

      const limits = memoryLimitsFromBudget(3 * 2 ** 30);
      expect(limits).toEqual({ memoryBytes: 3 * 2 ** 30, cacheBytes: Math.floor(0.3 * 2 ** 30) });
      await backend.setMemoryLimits({ memoryBytes: limits.memoryBytes, cacheBytes: 0 });
      expect(backend.memory().limitBytes).toBe(limits.memoryBytes);
      backend.free(weights);
      cache.dispose();
      await backend.flush();
      // With no buffer cache allowed, freed buffers go back to the system at once.
      expect(backend.memory().cacheBytes).toBe(0);
      expect(backend.memory().weightsBytes).toBe(start.weightsBytes);
      expect(backend.memory().kvCacheBytes).toBe(start.kvCacheBytes);
      await backend.setMemoryLimits({ cacheBytes: limits.cacheBytes });
    });
  });
}
