/**
 * The WebGPU KV cache's batched import (a warm reload's path): chunks fill packed buffers whose
 * scatter waits until the cache is next used, across batch boundaries, with reads in the middle of an
 * import, and with the cache disposed while an import is under way. The oracle is the bytes imported:
 * exportBlocks must give them back exactly. (The contract's side, imports then writes and attention,
 * is in conformance/kv-cache.test.ts.)
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { WebGpuBackend } from "../../backends/webgpu/backend.js";
import type { KvCacheSpec } from "../../backends/contract.js";
import type { WebGpuKvCache } from "../../backends/webgpu/ops/kv-cache.js";

const SPEC: KvCacheSpec = {
  layers: 2,
  kvHeads: 2,
  headDim: 64,
  blockSize: 16,
  blockCount: 12,
  storage: { kind: "float", dtype: "f16" },
};

async function setUp() {
  const backend = await WebGpuBackend.create();
  // Small staging buffers: every chunk below takes several pieces, so imports yield mid-way.
  backend.runtime.bulk.useUploadRing(4096, 3);
  const cache = backend.createKvCache(SPEC) as WebGpuKvCache;
  cache.transfers.useBatchBlocks(3);
  return { backend, cache };
}

describe("WebGPU KV cache imports", () => {
  it("fill packed batches across their boundaries, and a read in the middle of an import sees what arrived", async () => {
    const { backend, cache } = await setUp();
    const targets = [7, 2, 9, 0, 4, 11, 5, 1, 3, 8];
    const source = randomBytes(targets.length * cache.bytesPerBlock);
    const chunks = [2, 3, 1, 4]; // batches of 3: the chunks start at slots 0, 2 (crossing), 2, 0
    // One buffer the "reader" reuses for every chunk, as a reload does.
    const reused = new Uint8Array(4 * cache.bytesPerBlock);
    let first = 0;
    for (const [index, count] of chunks.entries()) {
      const bytes = reused.subarray(0, count * cache.bytesPerBlock);
      bytes.set(source.subarray(first * cache.bytesPerBlock, (first + count) * cache.bytesPerBlock));
      const importing = cache.importBlocks(targets.slice(first, first + count), bytes);
      if (index === 2) {
        // Attention binding the cache while this chunk is still on its way: the earlier chunks are
        // scattered now, this one later.
        await new Promise((resolve) => setImmediate(resolve));
        cache.layer(0);
      }
      await importing;
      bytes.fill(0x77);
      first += count;
    }
    const exported = await cache.exportBlocks(targets);
    expect(Buffer.from(exported).equals(source)).toBe(true);
    // A block imported once more, alone: the export after it sees the new bytes.
    const again = randomBytes(cache.bytesPerBlock);
    await cache.importBlocks([targets[4]!], again);
    expect(Buffer.from(await cache.exportBlock(targets[4]!)).equals(again)).toBe(true);
    expect(backend.failure).toBeNull();
    backend.dispose();
  });

  it("disposed while an import is under way: the import rejects, and the backend goes on working", async () => {
    const { backend, cache } = await setUp();
    const importing = cache.importBlocks([0, 1, 2], randomBytes(3 * cache.bytesPerBlock));
    await new Promise((resolve) => setImmediate(resolve));
    cache.dispose();
    await expect(importing).rejects.toThrow(/disposed/);
    await expect(cache.importBlocks([0], randomBytes(cache.bytesPerBlock))).rejects.toThrow(/after dispose/);
    const other = backend.createKvCache(SPEC) as WebGpuKvCache;
    other.transfers.useBatchBlocks(3);
    const bytes = randomBytes(4 * other.bytesPerBlock);
    await other.importBlocks([3, 5, 7, 9], bytes);
    expect(Buffer.from(await other.exportBlocks([3, 5, 7, 9])).equals(bytes)).toBe(true);
    expect(backend.failure).toBeNull();
    backend.dispose();
  });
});
