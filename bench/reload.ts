/**
 * The store's half of a warm reload, without a backend: AgentStore.loadInto (read, verify every
 * block's CRC-32, hand the blocks over) on agent files of growing size, against `dd` reading the same
 * file in the same run. The agent-memory benchmark measures the whole reload (with the upload into the
 * KV cache); this one says how much of it the file side allows.
 *
 * Each file is written by AgentStore.save, so it is in the page cache, as after an eviction; the
 * first, unmeasured read of each brings both readers to the same state. Figures are medians of 3.
 *
 * With --gpu, the other half on the WebGPU device: the same loads into a real KV cache (importBlocks,
 * then waiting for the GPU), and the ways host bytes can reach the GPU, in 8 MiB chunks from memory:
 *   importBlocks   the cache's own import (the runtime's mapped ring into staging + scatter dispatches);
 *   writeBuffer    queue.writeBuffer into one storage buffer, nothing else, in pieces of 8 MiB … 256 KiB;
 *   mapped         a mappedAtCreation buffer filled, unmapped and copied (copyBufferToBuffer);
 *   mapped ring    the same through four MAP_WRITE buffers reused (mapAsync after each copy);
 *   host memcpy    one copy between host buffers, the baseline for all of them;
 * and the other way: the runtime's bulk download, and exportBlocks as an eviction reads an agent back
 * (64 MiB at a time), each into new host memory and into reused buffers.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --noEmit false --outDir dist
 *   node dist/bench/reload.js [--max-mb N] [--gpu] [--name=NAME]
 */
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { WebGpuBackend } from "../backends/webgpu/backend.js";
import type { KvCache } from "../backends/contract.js";
import { createLogger } from "../src/logging.js";
import { AgentStore, type CacheIdentity } from "../src/memory/persistence.js";
import { ddRead } from "./lib/dd.js";
import { option } from "./lib/options.js";

const root = join(import.meta.dirname, "../..");
const maxMb = Number(option("max-mb") ?? 1024);
const SIZES_MB = [32, 64, 256, 1024, 4096].filter((mb) => mb <= maxMb);
const REPEATS = 3;

// The geometry of the agent-memory benchmark's 1B model: 16 layers × 8 kv heads × headDim 64, f16,
// blocks of 16 tokens: 32 KiB per token, 512 KiB per block.
const identity: CacheIdentity = {
  modelId: "bench",
  weightsFingerprint: "bench-weights",
  tokenizerFingerprint: "bench-tokenizer",
  backend: "webgpu",
  layers: 16,
  kvHeads: 8,
  headDim: 64,
  blockSize: 16,
  storage: { kind: "float", dtype: "f16" },
  bytesPerBlock: 16 * 8 * 64 * 2 * 2 * 16,
};

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), "agent-memory-reload-"));
  const store = new AgentStore(directory, identity, createLogger("WARNING"));
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  process.stdout.write(`reload benchmark: ${cpu}, ${availableParallelism()} threads; ${directory}\n`);
  const gpu = process.argv.includes("--gpu") ? await WebGpuBackend.create() : null;
  const cache: KvCache | null =
    gpu?.createKvCache({ ...identity, blockCount: (maxMb * 2 ** 20) / identity.bytesPerBlock }) ?? null;
  if (gpu) process.stdout.write(`  GPU: ${gpu.deviceDescription}\n`);
  const rows: { mb: number; bytes: number; loadMs: number; ddMs: number; gpuLoadMs: number | null }[] = [];
  for (const mb of SIZES_MB) {
    const blockCount = (mb * 2 ** 20) / identity.bytesPerBlock;
    const tokens = Uint32Array.from({ length: blockCount * identity.blockSize }, (_, i) => i % 50_000);
    const blocks = Array.from({ length: blockCount }, () => randomFillSync(new Uint8Array(identity.bytesPerBlock)));
    const agentId = `agent-${mb}`;
    await store.save({
      tenant: "bench",
      agentId,
      tokens,
      blockHashes: Array.from({ length: blockCount }, (_, i) => `hash-${i}`),
      blocks,
      updatedAt: Date.now(),
    });
    const file = join(directory, AgentStore.fileName("bench", agentId));
    const bytes = statSync(file).size;
    let received = 0;
    const load = async () => {
      received = 0;
      const started = performance.now();
      const outcome = await store.loadInto("bench", agentId, {
        begin: () => true,
        blocks: (_first, data) => {
          received += data.byteLength;
        },
      });
      if (outcome !== "loaded" || received !== blockCount * identity.bytesPerBlock) {
        throw new Error(`load ${outcome}, ${received} bytes`);
      }
      return performance.now() - started;
    };
    const dd = () => ddRead(file, 1).ms;
    await load();
    dd();
    const loads: number[] = [];
    const dds: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      loads.push(await load());
      dds.push(dd());
    }
    let gpuLoadMs: number | null = null;
    if (gpu && cache) {
      const intoCache = async () => {
        const started = performance.now();
        const outcome = await store.loadInto("bench", agentId, {
          begin: () => true,
          blocks: async (first, data) => {
            const count = data.byteLength / identity.bytesPerBlock;
            await cache.importBlocks(
              Array.from({ length: count }, (_, i) => first + i),
              data,
            );
          },
        });
        await gpu.flush();
        if (outcome !== "loaded") throw new Error(`load into the cache: ${outcome}`);
        return performance.now() - started;
      };
      await intoCache();
      gpuLoadMs = median([await intoCache(), await intoCache(), await intoCache()]);
    }
    const row = { mb, bytes, loadMs: median(loads), ddMs: median(dds), gpuLoadMs };
    rows.push(row);
    process.stdout.write(
      `  ${mb} MiB: load ${(bytes / row.loadMs / 1e6).toFixed(2)} GB/s, dd ${(bytes / row.ddMs / 1e6).toFixed(2)} GB/s` +
        (gpuLoadMs === null ? "\n" : `, into the GPU cache ${(bytes / gpuLoadMs / 1e6).toFixed(2)} GB/s\n`),
    );
    await store.delete("bench", agentId);
  }
  rmSync(directory, { recursive: true, force: true });
  const uploads = gpu && cache ? await uploadPaths(gpu, cache, Math.min(maxMb, 1024)) : null;
  process.stdout.write(
    `\n| file | load GB/s | dd GB/s | load / dd | into GPU cache GB/s | / dd |\n| --- | --- | --- | --- | --- | --- |\n`,
  );
  for (const row of rows) {
    const load = row.bytes / row.loadMs / 1e6;
    const dd = row.bytes / row.ddMs / 1e6;
    const intoGpu = row.gpuLoadMs === null ? null : row.bytes / row.gpuLoadMs / 1e6;
    const gpuCells = intoGpu === null ? "— | —" : `${intoGpu.toFixed(2)} | ${(intoGpu / dd).toFixed(2)}`;
    process.stdout.write(
      `| ${row.mb} MiB | ${load.toFixed(2)} | ${dd.toFixed(2)} | ${(load / dd).toFixed(2)} | ${gpuCells} |\n`,
    );
  }
  if (uploads) {
    process.stdout.write(`\n| host → GPU, 8 MiB chunks from memory | GB/s |\n| --- | --- |\n`);
    for (const [path, rate] of Object.entries(uploads)) process.stdout.write(`| ${path} | ${rate.toFixed(2)} |\n`);
  }
  cache?.dispose();
  const name = option("name");
  if (name) {
    writeFileSync(
      join(root, "bench/results", `reload-${name}.json`),
      `${JSON.stringify({ cpu, threads: availableParallelism(), gpu: gpu?.deviceDescription ?? null, rows, uploads }, null, 2)}\n`,
    );
  }
}

/** GB/s of each way host bytes reach the GPU: `mb` MiB in 8 MiB chunks, then waiting for the GPU. */
async function uploadPaths(backend: WebGpuBackend, cache: KvCache, mb: number): Promise<Record<string, number>> {
  const chunkBytes = 8 * 2 ** 20;
  const chunks = (mb * 2 ** 20) / chunkBytes;
  const source = randomFillSync(new Uint8Array(chunkBytes));
  const device = backend.runtime.device;
  const target = device.createBuffer({ size: chunkBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const perChunk = chunkBytes / identity.bytesPerBlock;
  const writeInPieces = (pieceBytes: number) => () => {
    for (let at = 0; at < chunkBytes; at += pieceBytes) {
      device.queue.writeBuffer(target, at, source.buffer, source.byteOffset + at, pieceBytes);
    }
    device.queue.submit([]);
  };
  const paths: Record<string, (chunk: number) => void | Promise<void>> = {
    importBlocks: (chunk) =>
      cache.importBlocks(
        Array.from({ length: perChunk }, (_, i) => chunk * perChunk + i),
        source,
      ),
    "writeBuffer, 8 MiB at a time": writeInPieces(chunkBytes),
    "writeBuffer, 1 MiB at a time": writeInPieces(2 ** 20),
    "writeBuffer, 256 KiB at a time": writeInPieces(2 ** 18),
    mapped: () => {
      const staging = device.createBuffer({
        size: chunkBytes,
        usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
      });
      new Uint8Array(staging.getMappedRange()).set(source);
      staging.unmap();
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(staging, 0, target, 0, chunkBytes);
      device.queue.submit([encoder.finish()]);
      staging.destroy();
    },
  };
  // A ring of MAP_WRITE buffers mapped again (mapAsync) once the GPU has copied out of them: their
  // pages stay allocated, where a new staging buffer for every chunk is fresh memory the host first
  // has to fault in.
  const ring = Array.from({ length: 4 }, () =>
    device.createBuffer({ size: chunkBytes, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC }),
  );
  const ringMapped = ring.map(async (buffer) => buffer.mapAsync(GPUMapMode.WRITE));
  const asyncPaths: Record<string, (chunk: number) => Promise<void>> = {
    "mapped ring, 4 × 8 MiB reused (mapAsync)": async (chunk) => {
      const slot = chunk % ring.length;
      const staging = ring[slot]!;
      await ringMapped[slot];
      new Uint8Array(staging.getMappedRange()).set(source);
      staging.unmap();
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(staging, 0, target, 0, chunkBytes);
      device.queue.submit([encoder.finish()]);
      ringMapped[slot] = staging.mapAsync(GPUMapMode.WRITE);
    },
  };
  const hostCopy = new Uint8Array(chunkBytes);
  const rates: Record<string, number> = {};
  const measure = async (name: string, upload: (chunk: number) => void | Promise<void>) => {
    for (let round = 0; round < 2; round++) {
      const started = performance.now();
      for (let chunk = 0; chunk < chunks; chunk++) await upload(chunk);
      await backend.flush();
      rates[name] = (chunks * chunkBytes) / (performance.now() - started) / 1e6;
    }
  };
  // The baseline for every path: one copy between two host buffers whose pages are already there.
  await measure("host memcpy (baseline: one copy, no GPU)", () => hostCopy.set(source));
  for (const [name, upload] of Object.entries(paths)) await measure(name, upload);
  for (const [name, upload] of Object.entries(asyncPaths)) await measure(name, upload);
  await Promise.all(ringMapped);
  for (const buffer of ring) buffer.destroy();
  // The other way. First the runtime's bulk download alone, 64 MiB at a time, into one host buffer
  // reused and into new host memory each time (whose pages the host must fault in).
  const packedBytes = 64 * 2 ** 20;
  const packed = backend.runtime.allocate([packedBytes / 4], "u32");
  const reusedHost = new Uint8Array(packedBytes);
  for (const fresh of [false, true]) {
    for (let round = 0; round < 2; round++) {
      const started = performance.now();
      for (let done = 0; done < mb * 2 ** 20; done += packedBytes) {
        await backend.runtime.downloadBulk(packed, 0, fresh ? new Uint8Array(packedBytes) : reusedHost);
      }
      const name = `GPU → host: downloadBulk, 64 MiB into ${fresh ? "new host memory each time" : "one reused host buffer"}`;
      rates[name] = (mb * 2 ** 20) / (performance.now() - started) / 1e6;
    }
  }
  backend.runtime.release(packed);
  // Then as an eviction reads an agent back before writing its file: 256 MiB at a time.
  const blockIds = Array.from({ length: (mb * 2 ** 20) / identity.bytesPerBlock }, (_, i) => i);
  const perExport = packedBytes / identity.bytesPerBlock;
  const exportBuffers = Array.from({ length: 4 }, () => new Uint8Array(packedBytes));
  for (const reuse of [false, true]) {
    for (let round = 0; round < 2; round++) {
      const started = performance.now();
      for (let first = 0, batch = 0; first < blockIds.length; first += perExport, batch++) {
        const ids = blockIds.slice(first, first + perExport);
        await cache.exportBlocks(ids, reuse ? exportBuffers[batch % exportBuffers.length] : undefined);
      }
      const name = `GPU → host: exportBlocks, 64 MiB at a time, into ${reuse ? "reused buffers" : "new memory"}`;
      rates[name] = (mb * 2 ** 20) / (performance.now() - started) / 1e6;
    }
  }
  target.destroy();
  return rates;
}

await main();
