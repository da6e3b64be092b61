/**
 * Sampling on the real WebGPU backend against an independent float64 reference of the whole
 * vocabulary's distribution (penalties → temperature → top_k → min_p → top_p): which tokens can be
 * drawn, how often, penalties that pull a token in from outside the device's top-k, greedy ties,
 * seeded reproducibility and a mixed batch in one call.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../../backends/contract.js";
import { createBackend } from "../../backends/registry.js";
import {
  CANDIDATE_CAP,
  SamplingError,
  SequenceSampler,
  sampleRows,
  samplingParams,
  type SamplingParams,
} from "../../src/engine/sampling.js";

let backend: Backend;
beforeAll(async () => {
  backend = await createBackend("webgpu");
});
afterAll(() => backend?.dispose());

interface History {
  prompt?: number[];
  generated?: number[];
}

/** The reference: the probability of every token of the vocabulary, in float64. */
function referenceProbabilities(row: Float32Array, params: SamplingParams, history: History = {}): Float64Array {
  const { prompt = [], generated = [] } = history;
  const counts = new Map<number, number>();
  for (const token of generated) counts.set(token, (counts.get(token) ?? 0) + 1);
  const seen = new Set([...prompt, ...generated]);
  const logits = Array.from(row, (raw, token) => {
    let value = raw;
    if (params.repetitionPenalty !== 1 && seen.has(token)) {
      value = value > 0 ? value / params.repetitionPenalty : value * params.repetitionPenalty;
    }
    const count = counts.get(token) ?? 0;
    return value - count * params.frequencyPenalty - (count > 0 ? params.presencePenalty : 0);
  });
  let kept = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b);
  const probabilities = new Float64Array(row.length);
  if (params.temperature === 0) {
    probabilities[kept[0]!] = 1;
    return probabilities;
  }
  if (params.topK > 0) kept = kept.slice(0, params.topK);
  const normalized = (ids: number[]) => {
    const top = Math.max(...ids.map((id) => logits[id]!));
    const weights = ids.map((id) => Math.exp((logits[id]! - top) / params.temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    return weights.map((weight) => weight / total);
  };
  let p = normalized(kept);
  kept = kept.filter((_, i) => p[i]! >= params.minP * p[0]!);
  p = normalized(kept);
  let mass = 0;
  kept = kept.filter((_, i) => {
    const keep = i === 0 || mass < params.topP;
    mass += p[i]!;
    return keep;
  });
  normalized(kept).forEach((probability, i) => (probabilities[kept[i]!] = probability));
  return probabilities;
}

/** Deterministic uniform numbers (mulberry32) for crafting logits. */
function uniforms(seed: number, count: number, low: number, high: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: count }, () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    return low + (((t ^ (t >>> 14)) >>> 0) / 4294967296) * (high - low);
  });
}

function sampler(params: Partial<SamplingParams>, history: History = {}): SequenceSampler {
  const sequence = new SequenceSampler(samplingParams(params), history.prompt ?? []);
  for (const token of history.generated ?? []) sequence.accept(token);
  return sequence;
}

/** Sample one token per row of `rows` (concatenated host logits) on the device. */
async function sample(rows: Float32Array, samplers: SequenceSampler[], on: Backend = backend): Promise<number[]> {
  const logits = on.upload(rows, [samplers.length, rows.length / samplers.length], "f32");
  try {
    return await sampleRows(on, logits, samplers);
  } finally {
    on.free(logits);
  }
}

/** `n` draws from the same logits: one row each, every row its own sequence and seed. */
async function drawMany(row: Float32Array, params: Partial<SamplingParams>, n: number, history: History = {}) {
  const rows = new Float32Array(n * row.length);
  for (let i = 0; i < n; i++) rows.set(row, i * row.length);
  return sample(
    rows,
    Array.from({ length: n }, (_, i) => sampler({ ...params, seed: 7919 * i + 1 }, history)),
  );
}

const support = (probabilities: Float64Array) => [...probabilities.keys()].filter((id) => probabilities[id]! > 0);
const distinct = (tokens: number[]) => [...new Set(tokens)].sort((a, b) => a - b);

/**
 * Pearson's χ² of observed counts against probabilities, cells with fewer than 5 expected draws pooled;
 * Infinity when a token of probability 0 was drawn.
 */
function chiSquare(tokens: number[], probabilities: Float64Array): { statistic: number; degrees: number } {
  const observed = new Float64Array(probabilities.length);
  for (const token of tokens) observed[token]!++;
  let statistic = 0;
  let cells = 0;
  let pooledObserved = 0;
  let pooledExpected = 0;
  probabilities.forEach((probability, token) => {
    const expected = probability * tokens.length;
    if (expected === 0 && observed[token]! > 0) statistic = Infinity;
    if (expected >= 5) {
      statistic += (observed[token]! - expected) ** 2 / expected;
      cells++;
    } else {
      pooledObserved += observed[token]!;
      pooledExpected += expected;
    }
  });
  if (pooledExpected > 0) {
    statistic += (pooledObserved - pooledExpected) ** 2 / pooledExpected;
    cells++;
  }
  return { statistic, degrees: cells - 1 };
}

/** χ² quantile at 1 − 1e-6 (Wilson–Hilferty, z = 4.753): a correct sampler exceeds it once in a million. */
const chiSquareBound = (degrees: number) =>
  degrees * (1 - 2 / (9 * degrees) + 4.753 * Math.sqrt(2 / (9 * degrees))) ** 3;

describe("sampling parameters", () => {
  it("fills in the built-in defaults, then `defaults`, then the input", () => {
    expect(samplingParams({})).toEqual({
      temperature: 1,
      topP: 1,
      topK: 0,
      minP: 0,
      seed: null,
      repetitionPenalty: 1,
      presencePenalty: 0,
      frequencyPenalty: 0,
    });
    const params = samplingParams({ temperature: undefined, topP: 0.9, seed: 3 }, { temperature: 0.6, topP: 0.95 });
    expect(params).toMatchObject({ temperature: 0.6, topP: 0.9, seed: 3 });
  });

  const bad: [keyof SamplingParams, unknown][] = [
    ["temperature", -0.1],
    ["temperature", 2.5],
    ["temperature", Number.NaN],
    ["topP", 0],
    ["topP", 1.01],
    ["topK", -1],
    ["topK", 2.5],
    ["minP", -0.01],
    ["minP", 1.5],
    ["repetitionPenalty", 0],
    ["presencePenalty", 2.01],
    ["frequencyPenalty", -2.5],
    ["seed", 1.5],
    ["temperature", "0.5"],
  ];
  for (const [field, value] of bad) {
    it(`rejects ${field} = ${String(value)}, naming the field, the value and the range`, () => {
      const attempt = () => samplingParams({ [field]: value });
      const shown = typeof value === "number" ? String(value) : JSON.stringify(value);
      expect(attempt).toThrow(SamplingError);
      expect(attempt).toThrow(`sampling parameter ${field} = ${shown} is not allowed: it must be `);
      try {
        attempt();
      } catch (error) {
        expect((error as SamplingError).field).toBe(field);
      }
    });
  }

  it("validates the defaults too", () => {
    expect(() => samplingParams({}, { topP: 2 })).toThrow(/topP = 2 is not allowed/);
  });
});

// 64 tokens: a few planted favourites over a low random floor. The device's top-k covers the whole
// vocabulary here, so the reference's full-vocabulary distribution is exactly what must come out.
const VOCAB = 64;
const ROW = uniforms(11, VOCAB, -3, 0);
Object.entries({ 3: 3.0, 10: 2.3, 20: 2.0, 33: 1.2, 47: 0.6, 58: 0.5 }).forEach(([id, v]) => (ROW[Number(id)] = v));
const HISTORY: History = { prompt: [3, 33, 5], generated: [10, 10, 47] };
const DRAWS = 3000;

const CONFIGS: { name: string; params: Partial<SamplingParams>; history?: History; wrong: Partial<SamplingParams> }[] =
  [
    { name: "temperature 0.7", params: { temperature: 0.7 }, wrong: { temperature: 1 } },
    { name: "top_k 4, temperature 1.3", params: { topK: 4, temperature: 1.3 }, wrong: { temperature: 1 } },
    { name: "top_p 0.8, temperature 0.8", params: { topP: 0.8, temperature: 0.8 }, wrong: { topP: 0.9 } },
    { name: "min_p 0.15, temperature 1.2", params: { minP: 0.15, temperature: 1.2 }, wrong: { temperature: 1 } },
    {
      name: "top_k 8, min_p 0.05, top_p 0.9, repetition 1.3, presence 0.4, frequency 0.3",
      params: {
        topK: 8,
        minP: 0.05,
        topP: 0.9,
        temperature: 0.9,
        repetitionPenalty: 1.3,
        presencePenalty: 0.4,
        frequencyPenalty: 0.3,
      },
      history: HISTORY,
      wrong: { repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0 },
    },
  ];

describe("sampled distributions against the reference", () => {
  // Every configuration's draws come from one sampleRows call: 5 × 3,000 rows, one top-k dispatch.
  const drawn = new Map<string, number[]>();
  beforeAll(async () => {
    const samplers = CONFIGS.flatMap(({ params, history }, c) =>
      Array.from({ length: DRAWS }, (_, i) => sampler({ ...params, seed: c * DRAWS + i }, history)),
    );
    const rows = new Float32Array(samplers.length * VOCAB);
    for (let i = 0; i < samplers.length; i++) rows.set(ROW, i * VOCAB);
    const tokens = await sample(rows, samplers);
    CONFIGS.forEach(({ name }, c) => drawn.set(name, tokens.slice(c * DRAWS, (c + 1) * DRAWS)));
  });

  for (const { name, params, history, wrong } of CONFIGS) {
    it(`${name}: frequencies fit the reference (χ², p = 1e-6) and a wrong reference is rejected`, () => {
      const tokens = drawn.get(name)!;
      const expected = referenceProbabilities(ROW, samplingParams(params), history);
      const fit = chiSquare(tokens, expected);
      expect(fit.statistic).toBeLessThan(chiSquareBound(fit.degrees));
      // The test has power: the distribution of a plausible mistake is far outside the bound.
      const mistaken = chiSquare(tokens, referenceProbabilities(ROW, samplingParams({ ...params, ...wrong }), history));
      expect(mistaken.statistic).toBeGreaterThan(chiSquareBound(mistaken.degrees));
    });

    if (name === "temperature 0.7") continue; // untruncated: too many rare tokens to see them all
    it(`${name}: exactly the reference's tokens are ever drawn`, () => {
      const expected = referenceProbabilities(ROW, samplingParams(params), history);
      // Every kept token is likely enough that 3,000 draws see it (the test's own premise).
      for (const id of support(expected)) expect(expected[id]! * DRAWS).toBeGreaterThan(25);
      expect(distinct(drawn.get(name)!)).toEqual(support(expected));
    });
  }
});

// 1,000 tokens: wider than the 256 candidates the device hands over.
const WIDE = 1000;
const WIDE_ROW = uniforms(23, WIDE, -3, 3);
const OUTSIDER = 777;
WIDE_ROW[OUTSIDER] = 0.5;

describe("penalties", () => {
  it("the outsider really is outside the device's top-256", () => {
    expect(WIDE_ROW.filter((v) => v > WIDE_ROW[OUTSIDER]!).length).toBeGreaterThan(CANDIDATE_CAP);
  });

  const raising: [string, Partial<SamplingParams>, History][] = [
    ["repetition 0.1 over the prompt", { repetitionPenalty: 0.1 }, { prompt: [OUTSIDER, 4] }],
    ["frequency −2 over two generations", { frequencyPenalty: -2 }, { generated: [OUTSIDER, OUTSIDER] }],
    ["presence −2 and frequency −1", { presencePenalty: -2, frequencyPenalty: -1 }, { generated: [OUTSIDER, 9] }],
  ];
  for (const [name, params, history] of raising) {
    it(`a negative penalty (${name}) raises a token from outside the top-k: greedy and top_k 3`, async () => {
      const greedy = samplingParams({ ...params, temperature: 0 });
      const greedyExpected = support(referenceProbabilities(WIDE_ROW, greedy, history));
      expect(greedyExpected).toEqual([OUTSIDER]);
      expect(await drawMany(WIDE_ROW, greedy, 1, history)).toEqual(greedyExpected);

      const sampled = samplingParams({ ...params, topK: 3, temperature: 1 });
      const expected = referenceProbabilities(WIDE_ROW, sampled, history);
      expect(support(expected)).toContain(OUTSIDER);
      expect(distinct(await drawMany(WIDE_ROW, sampled, 150, history))).toEqual(support(expected));
    });
  }

  it("a positive penalty lowers the favourite: the reference's next choice wins", async () => {
    const favourite = WIDE_ROW.indexOf(Math.max(...WIDE_ROW));
    for (const [params, history] of [
      [{ repetitionPenalty: 1.5 }, { prompt: [favourite] }],
      [{ presencePenalty: 2, frequencyPenalty: 2 }, { generated: [favourite] }],
    ] as [Partial<SamplingParams>, History][]) {
      const greedy = samplingParams({ ...params, temperature: 0 });
      const expected = support(referenceProbabilities(WIDE_ROW, greedy, history));
      expect(expected).not.toEqual([favourite]);
      expect(await drawMany(WIDE_ROW, greedy, 1, history)).toEqual(expected);
    }
  });

  it("the repetition penalty multiplies a negative logit (HF/vLLM), so it still lowers it", async () => {
    const row = Float32Array.from([-1, -1.2, -3, -0.5, -4]);
    const params = samplingParams({ temperature: 0, repetitionPenalty: 1.5 });
    const history = { prompt: [3, 0] }; // ×1.5: -0.5 → -0.75 still leads; ×4: -0.5 → -2, -1 → -4
    expect(support(referenceProbabilities(row, params, history))).toEqual([3]);
    expect(await drawMany(row, params, 1, history)).toEqual([3]);
    const sampled = samplingParams({ temperature: 1, topK: 2, repetitionPenalty: 4 });
    expect(support(referenceProbabilities(row, sampled, history))).toEqual([1, 3]); // -1.2 and -2 beat -4
    expect(distinct(await drawMany(row, sampled, 50, history))).toEqual([1, 3]);
  });

  it("stays exact when penalties push the whole fetched top below the rest", async () => {
    // The 300 best tokens all sit in the prompt and a strong repetition penalty sinks them below tokens
    // the device did not return: the sampler must notice and look at the whole row.
    const row = uniforms(31, WIDE, 0, 4.9);
    const favourites = Array.from({ length: 300 }, (_, i) => (i * 389) % WIDE); // 300 distinct ids
    favourites.forEach((id, i) => (row[id] = 5 + (i % 50) / 10));
    const history = { prompt: favourites };
    const greedy = samplingParams({ temperature: 0, repetitionPenalty: 3 });
    const expected = support(referenceProbabilities(row, greedy, history));
    expect(favourites).not.toContain(expected[0]);
    expect(await drawMany(row, greedy, 1, history)).toEqual(expected);

    const topK = samplingParams({ temperature: 1, topK: 4, repetitionPenalty: 3 });
    expect(distinct(await drawMany(row, topK, 40, history))).toEqual(
      support(referenceProbabilities(row, topK, history)),
    );
  });

  it("without top_k, draws only from the top 256 candidates (the documented cap)", async () => {
    const flat = uniforms(41, WIDE, 0, 0.5);
    const top = new Set([...flat.keys()].sort((a, b) => flat[b]! - flat[a]! || a - b).slice(0, CANDIDATE_CAP));
    const tokens = await drawMany(flat, { temperature: 2 }, 400);
    expect(tokens.every((token) => top.has(token))).toBe(true);
    expect(new Set(tokens).size).toBeGreaterThan(150); // it does sample broadly within them
  });
});

describe("greedy", () => {
  it("equals backend.argmax, lowest index on ties, with or without penalties", async () => {
    const rows = 6;
    const values = Float32Array.from(uniforms(53, rows * 300, -2, 2), (v) => Math.round(v * 2) / 2); // many ties
    for (let r = 0; r < rows; r++) values[r * 300 + 299] = values[r * 300 + 7] = 3; // tie: 7 and 299
    const logits = backend.upload(values, [rows, 300], "f32");
    const argmaxIds = backend.argmax(logits);
    const argmax = Array.from(await backend.read(argmaxIds));
    backend.free(argmaxIds);
    backend.free(logits);
    expect(argmax).toEqual(new Array<number>(rows).fill(7));
    // A penalty on a token far from the top sends the row down the top-k path instead of argmax.
    const plain = Array.from({ length: rows }, () => sampler({ temperature: 0 }));
    const penalized = Array.from({ length: rows }, () =>
      sampler({ temperature: 0, repetitionPenalty: 2 }, { prompt: [0, 1] }),
    );
    const both = new Float32Array(2 * values.length);
    both.set(values);
    both.set(values, values.length);
    expect(await sample(both, [...plain, ...penalized])).toEqual([...argmax, ...argmax]);
  });
});

describe("seeds", () => {
  const row = uniforms(61, 50, 0, 0.2); // close to uniform over 50 tokens
  async function stream(samplers: SequenceSampler[], steps: number): Promise<number[][]> {
    const out: number[][] = samplers.map(() => []);
    const rows = new Float32Array(samplers.length * row.length);
    for (let i = 0; i < samplers.length; i++) rows.set(row, i * row.length);
    for (let step = 0; step < steps; step++) {
      const tokens = await sample(rows, samplers);
      tokens.forEach((token, i) => out[i]!.push(token));
    }
    return out;
  }

  it("the same seed gives the same tokens; another seed, or none, different ones", async () => {
    const make = (seed: number | null) => sampler({ temperature: 1, seed, presencePenalty: 0.1 });
    const [a, b, c, d, e] = await stream([make(42), make(42), make(43), make(null), make(null)], 12);
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
    expect(d).not.toEqual(e);
  });
});

describe("a mixed batch", () => {
  it("greedy, sampled and penalized rows in one call give what each gives alone, with one argmax and one top-k", async () => {
    const rows = [ROW, WIDE_ROW.subarray(0, VOCAB), ROW, uniforms(71, VOCAB, -1, 1), ROW];
    const makers: (() => SequenceSampler)[] = [
      () => sampler({ temperature: 0 }),
      () => sampler({ temperature: 1, topK: 5, seed: 1 }),
      () => sampler({ temperature: 0, frequencyPenalty: 2 }, { generated: [3] }),
      () => sampler({ temperature: 0.8, topP: 0.7, repetitionPenalty: 1.2, seed: 2 }, { prompt: [1, 2, 3] }),
      () => sampler({ temperature: 0, presencePenalty: -2, frequencyPenalty: -1 }, { generated: [58] }),
    ];
    const alone: number[] = [];
    for (let i = 0; i < rows.length; i++) alone.push(...(await sample(rows[i]!, [makers[i]!()])));
    expect(alone[0]).toBe(3);
    expect(alone[2]).toBe(10); // 3 penalized by 2: 10 is next
    expect(alone[4]).toBe(58); // raised from 0.5 to 3.5, past token 3 (3.0)
    const calls = new Map<string, number>();
    const counting = new Proxy(backend, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          calls.set(String(property), (calls.get(String(property)) ?? 0) + 1);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const batch = new Float32Array(rows.length * VOCAB);
    rows.forEach((row, i) => batch.set(row, i * VOCAB));
    expect(
      await sample(
        batch,
        makers.map((make) => make()),
        counting,
      ),
    ).toEqual(alone);
    expect(calls.get("argmax")).toBe(1);
    expect(calls.get("topK")).toBe(1);
    expect(calls.get("read")).toBeLessThanOrEqual(4);
  });
});
