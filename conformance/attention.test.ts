import { describe, expect, it } from "vitest";
import type { Backend, KvCache, KvStorage, Tensor } from "../backends/contract.js";
import { PagedKv, type SequenceId } from "../backends/kv-paging.js";
import * as oracle from "./oracle/attention.js";
import { backendFor, backendsUnderTest, poison } from "./support/backends.js";
import { TOLERANCE, checkClose, relativeError, type Tolerance } from "./support/compare.js";
import { random, type Random } from "./support/random.js";

/** One sequence of a test batch: its whole context, and how many of its last tokens are queries. */
interface SequenceCase {
  contextLength: number;
  queryLength: number;
}

interface Case {
  name: string;
  qHeads: number;
  kvHeads: number;
  headDim: number;
  blockSize: number;
  slidingWindow: number | null;
  storage: KvStorage;
  sequences: SequenceCase[];
}

interface Sequence extends SequenceCase {
  id: SequenceId;
  keys: Float32Array;
  values: Float32Array;
  queries: Float32Array;
}

const F32: KvStorage = { kind: "float", dtype: "f32" };
const F16: KvStorage = { kind: "float", dtype: "f16" };
const Q8: KvStorage = { kind: "quantized", bits: 8, groupSize: 64 };
const Q4: KvStorage = { kind: "quantized", bits: 4, groupSize: 64 };

/** Storage dtype → what the output may differ from the float64 oracle over the exact keys and values. */
const STORAGE_TOLERANCE: Record<string, Tolerance> = { f32: { relative: 2e-5 }, f16: TOLERANCE.f16 };

/** A prefill chunk (5–40 rows) and decode rows, of different context lengths crossing block boundaries. */
function raggedSequences(rng: Random, blockSize: number): SequenceCase[] {
  const prefill = 5 + rng.integer(36);
  return [
    { contextLength: prefill + blockSize + rng.integer(2 * blockSize), queryLength: prefill },
    { contextLength: 1, queryLength: 1 },
    { contextLength: blockSize, queryLength: 1 },
    { contextLength: blockSize + 1, queryLength: 1 },
    { contextLength: 3 * blockSize + 1 + rng.integer(blockSize), queryLength: 1 },
  ];
}

/**
 * Fill a fresh cache with the sequences' keys and values, appended round-robin in chunks of 7 tokens
 * so their block tables interleave, and draw their queries.
 */
async function fill(backend: Backend, cache: KvCache, kv: PagedKv, rng: Random, c: Case): Promise<Sequence[]> {
  const sequences = c.sequences.map((s) => ({
    ...s,
    id: kv.create(),
    keys: rng.normals(s.contextLength * c.kvHeads * c.headDim),
    values: rng.normals(s.contextLength * c.kvHeads * c.headDim),
    queries: rng.normals(s.queryLength * c.qHeads * c.headDim),
  }));
  const row = c.kvHeads * c.headDim;
  const written: Tensor[] = [];
  for (let start = 0; sequences.some((s) => s.contextLength > start); start += 7) {
    for (const s of sequences.filter((s) => s.contextLength > start)) {
      const count = Math.min(7, s.contextLength - start);
      const slots = backend.upload(kv.append(s.id, count), [count], "u32");
      const keys = backend.upload(
        s.keys.subarray(start * row, (start + count) * row),
        [count, c.kvHeads, c.headDim],
        "f32",
      );
      const values = backend.upload(
        s.values.subarray(start * row, (start + count) * row),
        [count, c.kvHeads, c.headDim],
        "f32",
      );
      cache.write(0, keys, values, slots);
      written.push(slots, keys, values);
    }
  }
  // Freed only once the writes ran: an upload into a recycled buffer would overtake recorded work.
  await backend.flush();
  for (const tensor of written) backend.free(tensor);
  return sequences;
}

/** Attention of the sequences as one ragged batch: each sequence's output rows. */
async function attend(
  backend: Backend,
  cache: KvCache,
  kv: PagedKv,
  c: Case,
  sequences: Sequence[],
): Promise<Float32Array[]> {
  let queryStart = 0;
  const batch = backend.prepareAttention(
    sequences.map((s) => {
      const entry = {
        queryStart,
        queryLength: s.queryLength,
        contextLength: s.contextLength,
        blockTable: kv.blockTable(s.id),
      };
      queryStart += s.queryLength;
      return entry;
    }),
  );
  const queries = new Float32Array(queryStart * c.qHeads * c.headDim);
  let at = 0;
  for (const s of sequences) {
    queries.set(s.queries, at);
    at += s.queries.length;
  }
  const q = backend.upload(queries, [queryStart, c.qHeads, c.headDim], "f32");
  poison(backend, queries.length);
  const out = backend.attention(q, cache, 0, batch, {
    scale: 1 / Math.sqrt(c.headDim),
    slidingWindow: c.slidingWindow,
  });
  const result = (await backend.read(out)) as Float32Array;
  for (const tensor of [q, out]) backend.free(tensor);
  batch.dispose();
  const rows: Float32Array[] = [];
  at = 0;
  for (const s of sequences) {
    rows.push(result.subarray(at, at + s.queries.length));
    at += s.queries.length;
  }
  return rows;
}

function expected(c: Case, s: Sequence, keys: ArrayLike<number> = s.keys, values: ArrayLike<number> = s.values) {
  return oracle.attention(s.queries, keys, values, { ...c, scale: 1 / Math.sqrt(c.headDim) });
}

async function setUp(backendName: Parameters<typeof backendFor>[0], c: Case) {
  const backend = await backendFor(backendName);
  const blocksNeeded = c.sequences.reduce((sum, s) => sum + Math.ceil(s.contextLength / c.blockSize), 0);
  const cache = backend.createKvCache({
    layers: 1,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    blockSize: c.blockSize,
    blockCount: blocksNeeded + 2,
    storage: c.storage,
  });
  const kv = new PagedKv(cache);
  const sequences = await fill(backend, cache, kv, random(`attention ${c.name}`), c);
  return { backend, cache, kv, sequences };
}

function shapeOf(c: Case, s: Sequence): number[] {
  return [s.queryLength, c.qHeads, c.headDim, s.contextLength];
}

const storageName = (storage: KvStorage) => (storage.kind === "float" ? storage.dtype : `q${storage.bits}`);

// On a fresh machine lavapipe compiles a test's kernels in 25–85 s (its shader cache is empty); later
// runs take a second or two.
const COLD_COMPILE_TIMEOUT_MS = 240_000;

for (const backendName of backendsUnderTest()) {
  describe(
    `${backendName}: attention over the paged KV cache against float64`,
    { timeout: COLD_COMPILE_TIMEOUT_MS },
    () => {
      const rng = random("attention cases");
      const ragged = (
        name: string,
        heads: [q: number, kv: number],
        headDim: number,
        blockSize: number,
        storage: KvStorage,
        slidingWindow: number | null = null,
      ): Case => ({
        name,
        qHeads: heads[0],
        kvHeads: heads[1],
        headDim,
        blockSize,
        slidingWindow,
        storage,
        sequences: raggedSequences(rng, blockSize),
      });
      const cases: Case[] = [
        ragged("headDim 16, GQA 4:1", [4, 1], 16, 16, F32),
        ragged("headDim 64, GQA 8:2", [8, 2], 64, 32, F32),
        ragged("headDim 128, GQA 8:2, f16", [8, 2], 128, 16, F16),
        ragged("headDim 256, GQA 2:1", [4, 2], 256, 16, F32),
        ragged("headDim 128, GQA 16:1 in two head chunks", [16, 1], 128, 32, F32),
        ragged("headDim 32, no GQA, f16", [3, 3], 32, 16, F16),
        ragged("headDim 64, sliding window 24, f16", [8, 2], 64, 16, F16, 24),
      ];
      for (const c of cases) {
        it(`${c.name}, block ${c.blockSize}: ragged batch equals the oracle and each sequence alone`, async () => {
          const { backend, cache, kv, sequences } = await setUp(backendName, c);
          const together = await attend(backend, cache, kv, c, sequences);
          const tolerance = STORAGE_TOLERANCE[storageName(c.storage)]!;
          for (const [i, s] of sequences.entries()) {
            checkClose(
              `attention ${storageName(c.storage)} seq ${i}`,
              shapeOf(c, s),
              together[i]!,
              expected(c, s),
              tolerance,
            );
            const [alone] = await attend(backend, cache, kv, c, [s]);
            checkClose(`attention ragged vs alone, seq ${i}`, shapeOf(c, s), together[i]!, alone!, { relative: 1e-6 });
          }
          cache.dispose();
        });
      }

      it("splits a 4096-token decode context (flash-decoding) next to a prefill chunk and a window", async () => {
        for (const slidingWindow of [null, 700]) {
          const c: Case = {
            name: `long context window ${slidingWindow}`,
            qHeads: 8,
            kvHeads: 2,
            headDim: 64,
            blockSize: 32,
            slidingWindow,
            storage: F16,
            sequences: [
              { contextLength: 4096, queryLength: 1 },
              { contextLength: 900, queryLength: 20 },
              { contextLength: 3000, queryLength: 1 },
            ],
          };
          const { backend, cache, kv, sequences } = await setUp(backendName, c);
          const rows = await attend(backend, cache, kv, c, sequences);
          for (const [i, s] of sequences.entries()) {
            checkClose(`attention split seq ${i}`, shapeOf(c, s), rows[i]!, expected(c, s), TOLERANCE.f16);
          }
          cache.dispose();
        }
      });

      // Long prefills: a whole causal prompt from position 0, a chunk over a long cached context (many
      // key tiles, several work items per sequence, split partitions), rows either side of where a
      // backend may switch kernels (1–3, 8 and 150; 97 and 150 rows end in tails a backend may hand to
      // another kernel), beside decode rows, for every storage format and with a sliding window, GQA and
      // head chunks; each sequence also alone.
      const longPrefill = (
        storage: KvStorage,
        heads: [q: number, kv: number],
        headDim: number,
        window: number | null,
      ): Case => ({
        name: `long prefill ${storageName(storage)} ${heads.join(":")} ${headDim} window ${window}`,
        qHeads: heads[0],
        kvHeads: heads[1],
        headDim,
        blockSize: 16,
        slidingWindow: window,
        storage,
        sequences: [
          { contextLength: 150, queryLength: 150 },
          { contextLength: 1300, queryLength: 97 },
          { contextLength: 700, queryLength: 1 },
          { contextLength: 41, queryLength: 2 },
          { contextLength: 300, queryLength: 3 },
          { contextLength: 520, queryLength: 8 },
        ],
      });
      for (const c of [
        longPrefill(F16, [8, 2], 64, null),
        longPrefill(F32, [16, 1], 128, 200),
        longPrefill(F32, [6, 6], 32, null),
        longPrefill(Q8, [4, 1], 64, null),
        longPrefill(Q4, [4, 2], 128, 333),
        // headDim 96 (Phi-3's): workgroups of more than 256 threads (384: 128 vectors) in 32 KiB, which
        // the 512-thread shape of headDim 128 needs more memory than lavapipe has to take.
        longPrefill(F16, [8, 2], 96, null),
      ]) {
        it(`${c.name}: prompts and chunks of many rows equal the oracle, together and alone`, async () => {
          const { backend, cache, kv, sequences } = await setUp(backendName, c);
          const together = await attend(backend, cache, kv, c, sequences);
          const quantized = c.storage.kind === "quantized" ? c.storage.bits : null;
          for (const [i, s] of sequences.entries()) {
            const reference = quantized
              ? expected(c, s, oracle.quantizeAffine(s.keys, quantized), oracle.quantizeAffine(s.values, quantized))
              : expected(c, s);
            const tolerance = quantized ? { relative: 1e-3 } : STORAGE_TOLERANCE[storageName(c.storage)]!;
            checkClose(`attention ${c.name} seq ${i}`, shapeOf(c, s), together[i]!, reference, tolerance);
            const [alone] = await attend(backend, cache, kv, c, [s]);
            checkClose(
              `attention ${c.name} together vs alone, seq ${i}`,
              shapeOf(c, s),
              together[i]!,
              alone!,
              tolerance,
            );
          }
          cache.dispose();
        });
      }

      // Quantized storage: reading it in place is checked against the oracle over the same quantized
      // values (f32 math plus rare one-level differences in rounding ties), and the quantization error
      // of the output against the float keys and values is held to the bound derived below.
      //
      // Bound: per element |x − x̂| ≤ scale/2, scale = range/(2^bits − 1); rounding error is uniform,
      // RMS scale/√12. For normal data a group of 64 spans ≈ 4.9σ, so the relative RMS error of keys
      // and values is 4.9/((2^bits − 1)·√12): 0.56% at 8 bits, 9.4% at 4 bits. With scale·|q|·σ_k ≈ 1
      // key errors move the softmax weights by as much again, so the output's relative error is ≈ √2
      // times that: 0.8% and 13%. Stated bounds, with room for the spread of random draws: 1.5e-2 (8-bit)
      // and 2e-1 (4-bit).
      const QUANTIZED_BOUND = { 8: 1.5e-2, 4: 2e-1 };
      for (const storage of [Q8, Q4] as const) {
        for (const headDim of [64, 128]) {
          it(`${storageName(storage)} storage, headDim ${headDim}: reads in place; error within ${QUANTIZED_BOUND[storage.bits]}`, async () => {
            const c: Case = {
              name: `quantized ${storage.bits} ${headDim}`,
              qHeads: 8,
              kvHeads: 2,
              headDim,
              blockSize: 16,
              slidingWindow: null,
              storage,
              sequences: raggedSequences(random(`quantized sequences ${headDim}`), 16),
            };
            const { backend, cache, kv, sequences } = await setUp(backendName, c);
            const rows = await attend(backend, cache, kv, c, sequences);
            const all: number[][] = [[], []];
            for (const [i, s] of sequences.entries()) {
              const dequantized = expected(
                c,
                s,
                oracle.quantizeAffine(s.keys, storage.bits),
                oracle.quantizeAffine(s.values, storage.bits),
              );
              checkClose(
                `attention ${storageName(storage)} seq ${i} vs quantized oracle`,
                shapeOf(c, s),
                rows[i]!,
                dequantized,
                { relative: 1e-3 },
              );
              all[0]!.push(...rows[i]!);
              all[1]!.push(...expected(c, s));
            }
            const error = relativeError(all[0]!, all[1]!);
            expect(
              error,
              `attention ${storageName(storage)} [all rows, 8, ${headDim}]: relative error vs float keys/values`,
            ).toBeLessThan(QUANTIZED_BOUND[storage.bits]);
            cache.dispose();
          });
        }
      }

      it("refuses a q whose shape does not match the batch and cache, naming both", async () => {
        const c: Case = {
          name: "bad shapes",
          qHeads: 4,
          kvHeads: 2,
          headDim: 16,
          blockSize: 16,
          slidingWindow: null,
          storage: F32,
          sequences: [{ contextLength: 3, queryLength: 2 }],
        };
        const { backend, cache, kv, sequences } = await setUp(backendName, c);
        const batch = backend.prepareAttention([
          { queryStart: 0, queryLength: 2, contextLength: 3, blockTable: kv.blockTable(sequences[0]!.id) },
        ]);
        const q = backend.upload(new Float32Array(2 * 3 * 16), [2, 3, 16], "f32");
        expect(() => backend.attention(q, cache, 0, batch, { scale: 1, slidingWindow: null })).toThrow("[2, 3, 16]");
        expect(() =>
          backend.prepareAttention([{ queryStart: 1, queryLength: 1, contextLength: 1, blockTable: [0] }]),
        ).toThrow("contiguous from 0");
        batch.dispose();
        cache.dispose();
      });
    },
  );
}
