import { describe, expect, it } from "vitest";
import type { Backend, KvCache, KvCacheSpec, KvStorage, Tensor } from "../backends/contract.js";
import { PagedKv, type SequenceId } from "../backends/kv-paging.js";
import * as oracle from "./oracle/attention.js";
import { backendFor, backendsUnderTest } from "./support/backends.js";
import { TOLERANCE, checkClose, checkEqual } from "./support/compare.js";
import { random, type Random } from "./support/random.js";

// KV-cache semantics through the public contract: what attention reads after trims, forks, shared
// appends and a trip through host bytes. Attention over a sequence stands for "what the cache holds".

const STORAGES: KvStorage[] = [
  { kind: "float", dtype: "f32" },
  { kind: "float", dtype: "f16" },
  { kind: "quantized", bits: 8, groupSize: 64 },
  { kind: "quantized", bits: 4, groupSize: 64 },
];
const storageName = (storage: KvStorage) => (storage.kind === "float" ? storage.dtype : `q${storage.bits}`);

const SHAPE = { qHeads: 4, kvHeads: 2, headDim: 64, scale: 0.125, slidingWindow: null };
const ROW = SHAPE.kvHeads * SHAPE.headDim;

function spec(storage: KvStorage, blockCount: number, layers = 1, blockSize = 16): KvCacheSpec {
  return { layers, kvHeads: SHAPE.kvHeads, headDim: SHAPE.headDim, blockSize, blockCount, storage };
}

/** Tokens [count, kvHeads, headDim] of keys and values. */
function tokens(seed: string, count: number): { keys: Float32Array; values: Float32Array } {
  const rng = random(seed);
  return { keys: rng.normals(count * ROW), values: rng.normals(count * ROW) };
}

/** Append the tokens to the sequence and write them, in every layer; waits until written. */
async function appendTokens(
  backend: Backend,
  cache: KvCache,
  kv: PagedKv,
  sequence: SequenceId,
  data: { keys: Float32Array; values: Float32Array },
): Promise<void> {
  const count = data.keys.length / ROW;
  const shape = [count, SHAPE.kvHeads, SHAPE.headDim];
  const tensors: Tensor[] = [
    backend.upload(kv.append(sequence, count), [count], "u32"),
    backend.upload(data.keys, shape, "f32"),
    backend.upload(data.values, shape, "f32"),
  ];
  for (let layer = 0; layer < cache.spec.layers; layer++) cache.write(layer, tensors[1]!, tensors[2]!, tensors[0]!);
  // Freed only once written: an upload into a recycled buffer would overtake the recorded writes.
  await backend.flush();
  for (const tensor of tensors) backend.free(tensor);
}

/** Attention of `queryLength` new rows at the end of the sequence, in one layer. */
async function attendTo(
  backend: Backend,
  cache: KvCache,
  layer: number,
  blockTable: readonly number[],
  contextLength: number,
  queries: Float32Array,
): Promise<Float32Array> {
  const queryLength = queries.length / (SHAPE.qHeads * SHAPE.headDim);
  const batch = backend.prepareAttention([{ queryStart: 0, queryLength, contextLength, blockTable }]);
  const q = backend.upload(queries, [queryLength, SHAPE.qHeads, SHAPE.headDim], "f32");
  const out = backend.attention(q, cache, layer, batch, SHAPE);
  const result = (await backend.read(out)) as Float32Array;
  for (const tensor of [q, out]) backend.free(tensor);
  batch.dispose();
  return result;
}

const concat = (...parts: Float32Array[]) => {
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  parts.reduce((at, part) => (out.set(part, at), at + part.length), 0);
  return out;
};
const prefix = (data: { keys: Float32Array; values: Float32Array }, count: number) => ({
  keys: data.keys.subarray(0, count * ROW),
  values: data.values.subarray(0, count * ROW),
});

/** How many values' level quotients (x − bias) / scale, in float32 as the storage rule has them, are k + ½. */
function levelTies(values: Float32Array, levels: number): number {
  let ties = 0;
  for (let group = 0; group < values.length / 64; group++) {
    const x = values.subarray(group * 64, (group + 1) * 64);
    const low = Math.min(...x);
    const scale = oracle.roundToHalf(Math.fround(Math.fround(Math.max(...x) - low) / levels));
    const bias = oracle.roundToHalf(low);
    for (const value of x) if (Math.fround(Math.fround(value - bias) / scale) % 1 === 0.5) ties++;
  }
  return ties;
}

/**
 * Groups of 64 values whose range / levels is an f16 rounding tie (halfway between two f16 values,
 * both parities), min an f16 value, and most values at level quotients k + ½ exactly.
 */
function tieGroups(rng: Random, length: number, levels: number): Float32Array {
  const out = new Float32Array(length);
  const exact = (x: number) => Math.fround(x) === x;
  for (let group = 0; group < length / 64; group++) {
    let low: number, scaleTie: number;
    do {
      low = oracle.roundToHalf(rng.normals(1)[0]!);
      // f16 significand k (both parities) at exponent e, plus half a step: a tie.
      const e = -4 - rng.integer(levels > 15 ? 4 : 2);
      scaleTie = (1024 + rng.integer(1024) + 0.5) * 2 ** (e - 10);
    } while (!exact(low + scaleTie * levels));
    const scale = oracle.roundToHalf(scaleTie);
    const values = out.subarray(group * 64, (group + 1) * 64);
    values[0] = low;
    values[1] = low + scaleTie * levels;
    for (let i = 2; i < 64; i++) {
      const x = low + (rng.integer(levels) + 0.5) * scale;
      values[i] = exact(x) ? x : Math.fround(low + rng.next() * scaleTie * levels);
    }
  }
  return out;
}

for (const backendName of backendsUnderTest()) {
  describe(`${backendName}: KV-cache semantics`, () => {
    for (const storage of STORAGES) {
      it(`${storageName(storage)}: trim then append equals never having had the trimmed tokens`, async () => {
        const backend = await backendFor(backendName);
        const cache = backend.createKvCache(spec(storage, 16));
        const kv = new PagedKv(cache);
        const original = tokens(`trim original ${storageName(storage)}`, 40);
        const replacement = tokens(`trim replacement ${storageName(storage)}`, 12);
        const queries = random(`trim queries ${storageName(storage)}`).normals(12 * SHAPE.qHeads * SHAPE.headDim);
        for (const keep of [23, 32]) {
          const trimmed = kv.create();
          await appendTokens(backend, cache, kv, trimmed, original);
          kv.trim(trimmed, keep);
          await appendTokens(backend, cache, kv, trimmed, replacement);
          const fresh = kv.create();
          await appendTokens(backend, cache, kv, fresh, prefix(original, keep));
          await appendTokens(backend, cache, kv, fresh, replacement);
          const context = keep + 12;
          const shape = [12, SHAPE.qHeads, SHAPE.headDim, context];
          const fromTrimmed = await attendTo(backend, cache, 0, kv.blockTable(trimmed), context, queries);
          const fromFresh = await attendTo(backend, cache, 0, kv.blockTable(fresh), context, queries);
          checkEqual(`attention after trim to ${keep} and append`, shape, fromTrimmed, fromFresh);
          if (storage.kind === "float") {
            const keys = concat(prefix(original, keep).keys, replacement.keys);
            const values = concat(prefix(original, keep).values, replacement.values);
            checkClose(
              "attention after trim",
              shape,
              fromTrimmed,
              oracle.attention(queries, keys, values, SHAPE),
              TOLERANCE.f16,
            );
          }
          kv.free(trimmed);
          kv.free(fresh);
        }
        expect(kv.freeBlockCount).toBe(16);
        cache.dispose();
      });
    }

    for (const storage of [STORAGES[0]!, STORAGES[3]!]) {
      it(`${storageName(storage)}: a sharer's append leaves shared blocks and the other sequences as they were`, async () => {
        const backend = await backendFor(backendName);
        const cache = backend.createKvCache(spec(storage, 16));
        const kv = new PagedKv(cache);
        const name = storageName(storage);
        const base = tokens(`share base ${name}`, 40);
        const source = kv.create();
        await appendTokens(backend, cache, kv, source, base);
        const sharedBlocks = kv.blockTable(source).slice(0, 2);
        const before = await Promise.all(sharedBlocks.map((block) => cache.exportBlock(block)));
        const queries = random(`share queries ${name}`).normals(SHAPE.qHeads * SHAPE.headDim);
        const sourceBefore = await attendTo(backend, cache, 0, kv.blockTable(source), 40, queries);

        const child = kv.fork(source); // shares blocks 0-1, copies the partly filled third
        kv.trim(child, 20); // now the child's last block is shared and partly filled
        const childTokens = tokens(`share child ${name}`, 10);
        await appendTokens(backend, cache, kv, child, childTokens); // copy-on-write
        const grandchild = kv.fork(source, 32);
        const grandchildTokens = tokens(`share grandchild ${name}`, 3);
        await appendTokens(backend, cache, kv, grandchild, grandchildTokens);

        const after = await Promise.all(sharedBlocks.map((block) => cache.exportBlock(block)));
        sharedBlocks.forEach((block, i) =>
          checkEqual(`shared block ${block} bytes`, [after[i]!.length], after[i]!, before[i]!),
        );
        const sourceAfter = await attendTo(backend, cache, 0, kv.blockTable(source), 40, queries);
        checkEqual(
          "the source's attention after its sharers appended",
          [1, SHAPE.qHeads, SHAPE.headDim, 40],
          sourceAfter,
          sourceBefore,
        );

        // Each sharer sees its own tokens: the same as a sequence written from scratch with them.
        for (const [sequence, tokensOf] of [
          [
            child,
            {
              keys: concat(prefix(base, 20).keys, childTokens.keys),
              values: concat(prefix(base, 20).values, childTokens.values),
            },
          ],
          [
            grandchild,
            {
              keys: concat(prefix(base, 32).keys, grandchildTokens.keys),
              values: concat(prefix(base, 32).values, grandchildTokens.values),
            },
          ],
        ] as const) {
          const fresh = kv.create();
          await appendTokens(backend, cache, kv, fresh, tokensOf);
          const length = kv.length(sequence);
          const shape = [1, SHAPE.qHeads, SHAPE.headDim, length];
          const expected = await attendTo(backend, cache, 0, kv.blockTable(fresh), length, queries);
          checkEqual(
            "a sharer's attention",
            shape,
            await attendTo(backend, cache, 0, kv.blockTable(sequence), length, queries),
            expected,
          );
          kv.free(fresh);
        }
        cache.dispose();
      });
    }

    for (const storage of STORAGES) {
      it(`${storageName(storage)}: export → import round-trips bit-exactly, every layer`, async () => {
        const backend = await backendFor(backendName);
        const layers = 2;
        const source = backend.createKvCache(spec(storage, 4, layers));
        const target = backend.createKvCache(spec(storage, 6, layers));
        const kv = new PagedKv(source);
        const sequence = kv.create();
        await appendTokens(backend, source, kv, sequence, tokens(`export ${storageName(storage)}`, 40));
        const blocks = kv.blockTable(sequence);
        const exported = await Promise.all(blocks.map((block) => source.exportBlock(block)));
        expect(exported[0]!.length).toBe(source.bytesPerBlock);
        // Batched, in any order: the same bytes back to back.
        const order = [2, 0, 1];
        const batched = await source.exportBlocks(order.map((i) => blocks[i]!));
        const expected = new Uint8Array(order.length * source.bytesPerBlock);
        order.forEach((i, at) => expected.set(exported[i]!, at * source.bytesPerBlock));
        checkEqual("exportBlocks of three blocks", [batched.length], batched, expected);
        await expect(source.exportBlocks([0, 4])).rejects.toThrow("block 4 is outside 0…3");
        // Into the caller's memory, a view at an offset into a larger buffer full of other bytes.
        const reused = new Uint8Array(8 + order.length * source.bytesPerBlock + 8).fill(0xee);
        const view = reused.subarray(8, 8 + order.length * source.bytesPerBlock);
        expect(
          await source.exportBlocks(
            order.map((i) => blocks[i]!),
            view,
          ),
        ).toBe(view);
        checkEqual("exportBlocks into the caller's memory", [view.length], view, expected);
        expect([...reused.subarray(0, 8), ...reused.subarray(reused.length - 8)]).toEqual(new Array(16).fill(0xee));
        await expect(source.exportBlocks([0, 1], view)).rejects.toThrow(
          `exportBlocks: got ${view.byteLength} bytes to fill for 2 blocks of ${source.bytesPerBlock} bytes`,
        );
        const targetBlocks = [5, 2, 3];
        targetBlocks.forEach((block, i) => target.importBlock(block, exported[i]!));
        for (const [i, block] of targetBlocks.entries()) {
          const again = await target.exportBlock(block);
          checkEqual(`block ${blocks[i]} exported, imported as ${block}`, [again.length], again, exported[i]!);
        }
        const queries = random(`export queries ${storageName(storage)}`).normals(3 * SHAPE.qHeads * SHAPE.headDim);
        for (let layer = 0; layer < layers; layer++) {
          checkEqual(
            `attention over imported blocks, layer ${layer}`,
            [3, SHAPE.qHeads, SHAPE.headDim, 40],
            await attendTo(backend, target, layer, targetBlocks, 40, queries),
            await attendTo(backend, source, layer, blocks, 40, queries),
          );
        }
        expect(() => target.importBlock(0, exported[0]!.subarray(1))).toThrow(
          `got ${source.bytesPerBlock - 1} bytes, a block of this cache takes ${source.bytesPerBlock}`,
        );

        // The batched import: the same bytes back to back (as a file holds them), into other blocks,
        // from a view at an odd offset into a buffer the caller reuses as soon as the call resolves.
        const packed = new Uint8Array(1 + exported.length * source.bytesPerBlock);
        exported.forEach((bytes, i) => packed.set(bytes, 1 + i * source.bytesPerBlock));
        const batchBlocks = [3, 4, 0]; // a run of consecutive blocks, then one alone
        await target.importBlocks(batchBlocks, packed.subarray(1));
        packed.fill(0xa5);
        for (const [i, block] of batchBlocks.entries()) {
          const again = await target.exportBlock(block);
          checkEqual(`block ${blocks[i]} imported in a batch as ${block}`, [again.length], again, exported[i]!);
        }
        // From a view of shared memory (a worker thread's, say), ids out of order.
        const shared = new Uint8Array(new SharedArrayBuffer(8 + exported.length * source.bytesPerBlock), 8);
        exported.forEach((bytes, i) => shared.set(bytes, i * source.bytesPerBlock));
        const sharedBlocks = [5, 1, 2];
        await target.importBlocks(sharedBlocks, shared);
        shared.fill(0x5a);
        for (const [i, block] of sharedBlocks.entries()) {
          const again = await target.exportBlock(block);
          checkEqual(`block ${blocks[i]} imported from shared memory as ${block}`, [again.length], again, exported[i]!);
        }
        for (let layer = 0; layer < layers; layer++) {
          checkEqual(
            `attention over blocks imported in a batch, layer ${layer}`,
            [3, SHAPE.qHeads, SHAPE.headDim, 40],
            await attendTo(backend, target, layer, batchBlocks, 40, queries),
            await attendTo(backend, source, layer, blocks, 40, queries),
          );
        }
        const two = packed.subarray(0, 2 * source.bytesPerBlock);
        await expect(target.importBlocks([2], two)).rejects.toThrow(
          `importBlocks: got ${two.byteLength} bytes for 1 blocks of ${source.bytesPerBlock} bytes`,
        );
        await expect(target.importBlocks([2, 2], two)).rejects.toThrow("importBlocks: block 2 is listed twice");
        await expect(target.importBlocks([2, 6], two)).rejects.toThrow("importBlocks: block 6 is outside 0…5");
        await target.importBlocks([], new Uint8Array(0));
        source.dispose();
        target.dispose();
      });
    }

    for (const storage of [STORAGES[1]!, STORAGES[3]!]) {
      it(`${storageName(storage)}: imports in a row, as a reload's chunks come, then a write into the last block and attention`, async () => {
        const backend = await backendFor(backendName);
        const layers = 2;
        const source = backend.createKvCache(spec(storage, 4, layers));
        const target = backend.createKvCache(spec(storage, 6, layers));
        const sourceKv = new PagedKv(source);
        const targetKv = new PagedKv(target);
        const data = tokens(`reload ${storageName(storage)}`, 41);
        const sequence = sourceKv.create();
        await appendTokens(backend, source, sourceKv, sequence, prefix(data, 40));
        const exported = await source.exportBlocks(sourceKv.blockTable(sequence));
        // The target's sequence takes fresh blocks for the 40 tokens, filled by two imports issued
        // back to back (the second before the first resolves), each from a buffer reused at once.
        const reloaded = targetKv.create();
        targetKv.append(reloaded, 40);
        const table = targetKv.blockTable(reloaded);
        const chunk = (from: number, to: number) =>
          exported.slice(from * source.bytesPerBlock, to * source.bytesPerBlock);
        const first = chunk(0, 2);
        const second = chunk(2, 3);
        const imports = [target.importBlocks(table.slice(0, 2), first), target.importBlocks(table.slice(2, 3), second)];
        await Promise.all(imports);
        first.fill(0x3c);
        second.fill(0xc3);
        // The 41st token goes into the last imported block, in both caches: it must land after the
        // imported bytes, not under them.
        const last = { keys: data.keys.subarray(40 * ROW), values: data.values.subarray(40 * ROW) };
        await appendTokens(backend, source, sourceKv, sequence, last);
        await appendTokens(backend, target, targetKv, reloaded, last);
        const queries = random(`reload queries ${storageName(storage)}`).normals(3 * SHAPE.qHeads * SHAPE.headDim);
        for (let layer = 0; layer < layers; layer++) {
          checkEqual(
            `attention after imports and a write, layer ${layer}`,
            [3, SHAPE.qHeads, SHAPE.headDim, 41],
            await attendTo(backend, target, layer, targetKv.blockTable(reloaded), 41, queries),
            await attendTo(backend, source, layer, sourceKv.blockTable(sequence), 41, queries),
          );
        }
        // One block imported twice in a row, nothing read between: the later bytes are what it holds.
        const block = table[0]!;
        const twice = [target.importBlocks([block], chunk(1, 2)), target.importBlocks([block], chunk(2, 3))];
        await Promise.all(twice);
        const held = await target.exportBlock(block);
        checkEqual("a block imported twice holds the later bytes", [held.length], held, chunk(2, 3));
        source.dispose();
        target.dispose();
      });
    }

    // Window-1 attention returns each token's stored value alone, so it reads the storage back.
    // Bound per element: f32 exact; f16 half an ulp (2⁻¹¹ relative); quantized, half a step of its
    // group, (max − min) / (2^bits − 1) / 2, plus the f16 rounding of the bias (2⁻¹¹·|min|).
    for (const storage of STORAGES) {
      it(`${storageName(storage)}: every stored value comes back within the storage's bound`, async () => {
        const backend = await backendFor(backendName);
        const cache = backend.createKvCache(spec(storage, 4, 1, 32));
        const kv = new PagedKv(cache);
        const sequence = kv.create();
        const data = tokens(`bound ${storageName(storage)}`, 100);
        await appendTokens(backend, cache, kv, sequence, data);
        const batch = backend.prepareAttention([
          { queryStart: 0, queryLength: 100, contextLength: 100, blockTable: kv.blockTable(sequence) },
        ]);
        const q = backend.upload(
          new Float32Array(100 * SHAPE.kvHeads * SHAPE.headDim),
          [100, SHAPE.kvHeads, SHAPE.headDim],
          "f32",
        );
        const stored = (await backend.read(
          backend.attention(q, cache, 0, batch, { scale: 1, slidingWindow: 1 }),
        )) as Float32Array;
        batch.dispose();
        for (let group = 0; group < data.values.length / 64; group++) {
          const values = data.values.subarray(group * 64, (group + 1) * 64);
          const [low, high] = [Math.min(...values), Math.max(...values)];
          const bound =
            storage.kind === "quantized"
              ? (high - low) / (2 ** storage.bits - 1) / 2 + 2 ** -11 * Math.abs(low) + 1e-6
              : storage.dtype === "f16"
                ? 2 ** -11 * Math.max(...values.map(Math.abs))
                : 0;
          for (let i = 0; i < 64; i++) {
            const error = Math.abs(stored[group * 64 + i]! - values[i]!);
            if (!(error <= bound)) {
              throw new Error(
                `${storageName(storage)} value ${group * 64 + i}: stored ${stored[group * 64 + i]}, written ${values[i]}, error ${error} > bound ${bound}`,
              );
            }
          }
        }
        cache.dispose();
      });
    }

    // Ties are where a device's division shows: WGSL lets it be 2.5 ulp off, and an H200 stored ~1
    // group in 10⁴ with its scale one f16 step up (bench/RESULTS.md, "Quantized KV at rounding ties").
    // Every group here has range / levels exactly at an f16 rounding tie, and most of its values have
    // level quotients exactly k + ½: each must be stored as the oracle's float32 arithmetic rounds it
    // (to even).
    for (const bits of [8, 4] as const) {
      it(`q${bits}: a scale or a level at a rounding tie is stored rounded to even, as the oracle rounds it`, async () => {
        const backend = await backendFor(backendName);
        const storage: KvStorage = { kind: "quantized", bits, groupSize: 64 };
        const cache = backend.createKvCache(spec(storage, 2, 1, 32));
        const kv = new PagedKv(cache);
        const sequence = kv.create();
        const count = 32;
        const values = tieGroups(random(`ties q${bits}`), count * ROW, 2 ** bits - 1);
        expect(levelTies(values, 2 ** bits - 1)).toBeGreaterThan(values.length / 2);
        await appendTokens(backend, cache, kv, sequence, { keys: values, values });
        const batch = backend.prepareAttention([
          { queryStart: 0, queryLength: count, contextLength: count, blockTable: kv.blockTable(sequence) },
        ]);
        const q = backend.upload(new Float32Array(count * ROW), [count, SHAPE.kvHeads, SHAPE.headDim], "f32");
        const out = backend.attention(q, cache, 0, batch, { scale: 1, slidingWindow: 1 });
        const stored = (await backend.read(out)) as Float32Array;
        for (const tensor of [q, out]) backend.free(tensor);
        batch.dispose();
        // A scale one f16 step off moves a value by 2⁻¹¹ of the scale times its level; a level, by a
        // step. Both are far above float32 rounding of scale · level + bias.
        const expected = oracle.quantizeAffine(values, bits);
        for (let i = 0; i < values.length; i++) {
          if (!(Math.abs(stored[i]! - expected[i]!) <= 1e-6 * (1 + Math.abs(expected[i]!)))) {
            throw new Error(
              `q${bits} value ${i} of group ${Math.floor(i / 64)}: stored ${stored[i]}, oracle ${expected[i]}`,
            );
          }
        }
        cache.dispose();
      });
    }

    it("refuses bad blocks, layers and shapes with messages that name them", async () => {
      const backend = await backendFor(backendName);
      const cache = backend.createKvCache(spec(STORAGES[0]!, 2));
      await expect(cache.exportBlock(2)).rejects.toThrow("block 2 is outside 0…1");
      const keys = backend.upload(new Float32Array(ROW), [1, SHAPE.kvHeads, SHAPE.headDim], "f32");
      const slots = backend.upload(new Uint32Array([0]), [1], "u32");
      expect(() => cache.write(1, keys, keys, slots)).toThrow("layer 1 is outside 0…0");
      expect(() => cache.write(0, keys, keys, keys)).toThrow("slots must be u32 [1], got f32 [1, 2, 64]");
      expect(() =>
        backend.createKvCache({ ...spec({ kind: "quantized", bits: 8, groupSize: 64 }, 2), headDim: 32 }),
      ).toThrow("multiple of 64");
      cache.dispose();
    });
  });
}
