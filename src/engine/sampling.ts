/**
 * Token sampling for a batch of sequences. The vocabulary can be 262K wide, so the heavy part runs on
 * the device and little crosses to the host: greedy rows without penalties send back one id
 * (`argmax`); every other row sends back its top candidates (`topK`) plus the exact logits of the
 * tokens its penalties touch (a gather), and the host finishes the job in float64 on a few hundred
 * numbers: penalties → temperature → top_k → min_p → top_p → a draw from the sequence's own PRNG.
 * Each stage works on what the previous one kept, renormalized: in effect vLLM v1's order (it applies
 * min_p before top_k, which keeps the same tokens since min_p is relative to the most likely one);
 * llama.cpp applies temperature last and HF min_p after top_p, which can keep different sets.
 *
 * Greedy and top_k rows are exact even under penalties: when penalties sink so much of the fetched
 * top-k that the answer could lie outside it, that row alone is read whole (rare; 1 MB at 262K).
 * A constrained row (constrained decoding) is always read whole: the tokens its mask allows may all lie
 * outside any top-k, so they are ranked on the host among the allowed ones only.
 */
import type { Backend, Tensor } from "../../backends/contract.js";
import type { TokenConstraint } from "./events.js";

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  topK: number;
  /** 0 = off. */
  minP: number;
  /** null = a random seed. */
  seed: number | null;
  /** 1 = off. vLLM/HF: over prompt + generated tokens, a logit > 0 is divided by it, otherwise multiplied. */
  repetitionPenalty: number;
  /** 0 = off. OpenAI: subtracted once from the logit of every token already generated. */
  presencePenalty: number;
  /** 0 = off. OpenAI: subtracted once per time the token was generated. */
  frequencyPenalty: number;
}

/**
 * Candidates a sampled row keeps: the WebGPU top-k kernel's maximum. Without top_k, a row samples from
 * the tokens whose (penalized) logit is at least its 256th largest raw logit; the probability mass
 * beyond is dropped, as llama.cpp-style candidate samplers do. At a temperature ≤ 2 that mass is tiny
 * for a trained model, and it spares moving the whole vocabulary to the host every step. A top_k above
 * the cap behaves as the cap.
 */
export const CANDIDATE_CAP = 256;

const DEFAULTS: SamplingParams = {
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  seed: null,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
};

/** Bad sampling input; `field` names the parameter, the message the value and what is allowed. */
export class SamplingError extends Error {
  override name = "SamplingError";
  constructor(
    readonly field: keyof SamplingParams,
    value: unknown,
    allowed: string,
  ) {
    const shown = typeof value === "number" ? String(value) : JSON.stringify(value);
    super(`sampling parameter ${field} = ${shown} is not allowed: it must be ${allowed}`);
  }
}

type Check = (value: number) => boolean;
const RULES: Record<Exclude<keyof SamplingParams, "seed">, [Check, string]> = {
  // OpenAI's range; Anthropic's [0, 1] is inside it. Beyond 2 the candidates are close to uniform noise.
  temperature: [(v) => v >= 0 && v <= 2, "a number from 0 (greedy) to 2"],
  topP: [(v) => v > 0 && v <= 1, "a number in (0, 1]; 1 turns it off"],
  topK: [(v) => Number.isInteger(v) && v >= 0, "an integer ≥ 0; 0 turns it off"],
  minP: [(v) => v >= 0 && v <= 1, "a number from 0 to 1; 0 turns it off"],
  repetitionPenalty: [(v) => v > 0, "a number > 0; 1 turns it off, above 1 discourages repeats"],
  presencePenalty: [(v) => v >= -2 && v <= 2, "a number from -2 to 2; 0 turns it off"],
  frequencyPenalty: [(v) => v >= -2 && v <= 2, "a number from -2 to 2; 0 turns it off"],
};

/** Complete and validate sampling parameters: `input` over `defaults` (e.g. generation_config) over the built-ins. */
export function samplingParams(input: Partial<SamplingParams>, defaults: Partial<SamplingParams> = {}): SamplingParams {
  const params: SamplingParams = { ...DEFAULTS };
  for (const source of [defaults, input]) {
    for (const [key, value] of Object.entries(source) as [keyof SamplingParams, unknown][]) {
      if (value !== undefined) (params as unknown as Record<string, unknown>)[key] = value;
    }
  }
  for (const [field, [check, allowed]] of Object.entries(RULES) as [keyof typeof RULES, [Check, string]][]) {
    const value = params[field] as unknown;
    if (typeof value !== "number" || !Number.isFinite(value) || !check(value)) {
      throw new SamplingError(field, value, allowed);
    }
  }
  if (params.seed !== null && !Number.isSafeInteger(params.seed)) {
    throw new SamplingError("seed", params.seed, "an integer (within ±2^53) or null for a random seed");
  }
  return params;
}

/** xoshiro128** (Blackman & Vigna), its 128-bit state filled by splitmix64 from the seed. */
class Xoshiro128 {
  private readonly s = new Uint32Array(4);

  constructor(seed: number | null) {
    if (seed === null) {
      do crypto.getRandomValues(this.s);
      while (this.s.every((word) => word === 0));
      return;
    }
    const mask = (1n << 64n) - 1n;
    let x = BigInt.asUintN(64, BigInt(seed));
    for (let i = 0; i < 4; i += 2) {
      x = (x + 0x9e3779b97f4a7c15n) & mask;
      let z = x;
      z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
      z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
      z ^= z >> 31n;
      this.s[i] = Number(z & 0xffffffffn);
      this.s[i + 1] = Number(z >> 32n);
    }
  }

  nextUint32(): number {
    const s = this.s; // the Uint32Array keeps each word unsigned, whatever sign the bit operations give
    const [s0, s1] = [s[0]!, s[1]!];
    let [s2, s3] = [s[2]!, s[3]!];
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    s2 ^= s0;
    s3 ^= s1;
    s[1] = s1 ^ s2;
    s[0] = s0 ^ s3;
    s[2] = s2 ^ (s1 << 9);
    s[3] = rotl(s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextDouble(): number {
    return ((this.nextUint32() >>> 5) * 67108864 + (this.nextUint32() >>> 6)) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** One sequence's sampling state: its parameters, its PRNG and what its penalties count. */
export class SequenceSampler {
  private readonly rng: Xoshiro128;
  /** Times each token was generated (presence / frequency penalties). */
  private readonly generatedCounts = new Map<number, number>();
  /** Prompt ∪ generated tokens, kept only while the repetition penalty is on. */
  private readonly seen = new Set<number>();
  /** Every token some penalty touches, each once, in first-seen order: the ids the device gathers. */
  private readonly penalizedIds: number[] = [];
  private readonly penalizedSet = new Set<number>();
  private readonly repetition: boolean;
  private readonly additive: boolean;

  constructor(
    readonly params: SamplingParams,
    promptTokens: readonly number[],
    /** Constrained decoding: the sampler draws only what this allows. */
    readonly constraint: TokenConstraint | null = null,
  ) {
    this.rng = new Xoshiro128(params.seed);
    this.repetition = params.repetitionPenalty !== 1;
    this.additive = params.presencePenalty !== 0 || params.frequencyPenalty !== 0;
    if (this.repetition) for (const token of promptTokens) this.markSeen(token);
  }

  /** Record a generated token (for penalties, and to advance the constraint). */
  accept(token: number): void {
    this.constraint?.accept(token);
    if (this.repetition) this.markSeen(token);
    if (!this.additive) return;
    this.generatedCounts.set(token, (this.generatedCounts.get(token) ?? 0) + 1);
    this.markPenalized(token);
  }

  /** @internal Tokens whose logits the penalties change. */
  get penalized(): readonly number[] {
    return this.penalizedIds;
  }

  /** @internal Whether `token` is one of `penalized`. */
  isPenalized(token: number): boolean {
    return this.penalizedSet.has(token);
  }

  /** @internal The logit after penalties: repetition first, then frequency and presence (vLLM's order). */
  penalize(token: number, logit: number): number {
    let value = logit;
    if (this.repetition && this.seen.has(token)) {
      value = value > 0 ? value / this.params.repetitionPenalty : value * this.params.repetitionPenalty;
    }
    const count = this.generatedCounts.get(token) ?? 0;
    if (count > 0) value -= this.params.presencePenalty + this.params.frequencyPenalty * count;
    return value;
  }

  /** @internal The next uniform draw of this sequence's stream. */
  uniform(): number {
    return this.rng.nextDouble();
  }

  private markSeen(token: number): void {
    this.seen.add(token);
    this.markPenalized(token);
  }

  private markPenalized(token: number): void {
    if (this.penalizedSet.has(token)) return;
    this.penalizedSet.add(token);
    this.penalizedIds.push(token);
  }
}

interface Candidate {
  id: number;
  /** Logit after penalties. */
  value: number;
}

/** Highest value first; on ties the lower id, like backend.argmax / topK and mlx. */
const byRank = (a: Candidate, b: Candidate) => b.value - a.value || a.id - b.id;

/** How a row is sampled on the device, and what its host step needs. */
interface RowPlan {
  sampler: SequenceSampler;
  /** The tokens its penalties touch (ids past the logits' width, which no logit scores, left out). */
  penalized: readonly number[];
  /** Row of the top-k results, or −1 for a row argmax decides. */
  topKRow: number;
  /** Offset of this row's penalized logits in the gather's output. */
  gatherOffset: number;
  /** Leading candidates that must be exactly the top of the penalized distribution (greedy: 1, top_k: k). */
  needed: number;
  /** Whether too few sure candidates means reading the whole row (greedy and top_k rows must be exact). */
  exact: boolean;
  /** Constrained rows: the tokens allowed (a bitset), ranked among themselves on the host. */
  allowed: Uint32Array | null;
}

/** One token per row of logits f32 [rows, vocab] on the backend; samplers[i] drives row i. */
export async function sampleRows(
  backend: Backend,
  logits: Tensor,
  samplers: readonly SequenceSampler[],
): Promise<number[]> {
  const [rows, vocab] = logits.shape;
  if (logits.shape.length !== 2 || rows !== samplers.length || logits.dtype !== "f32" || !vocab) {
    throw new Error(
      `sampleRows: logits should be f32 [${samplers.length}, vocab], got ${logits.dtype} [${logits.shape.join(", ")}]`,
    );
  }
  const cap = Math.min(CANDIDATE_CAP, vocab);
  const plans: RowPlan[] = [];
  const topKRows: number[] = [];
  const gatherIds: number[] = [];
  let k = 0;
  const fullRows: number[] = [];
  samplers.forEach((sampler, row) => {
    const { temperature, topK } = sampler.params;
    const penalized = sampler.penalized.filter((token) => token < vocab);
    const greedy = temperature === 0;
    if (sampler.constraint) {
      const needed = greedy ? 1 : topK > 0 && topK <= cap ? topK : cap;
      const allowed = sampler.constraint.mask();
      plans.push({ sampler, penalized, topKRow: -1, gatherOffset: 0, needed, exact: true, allowed });
      fullRows.push(row);
      return;
    }
    if (greedy && penalized.length === 0) {
      plans.push({ sampler, penalized, topKRow: -1, gatherOffset: 0, needed: 1, exact: true, allowed: null });
      return;
    }
    const exact = greedy || (topK > 0 && topK <= cap);
    const needed = greedy ? 1 : exact ? topK : cap;
    // Enough candidates that, even if every penalized token is among them, `needed` unpenalized remain.
    k = Math.max(k, Math.min(cap, needed + penalized.length));
    plans.push({
      sampler,
      penalized,
      topKRow: topKRows.length,
      gatherOffset: gatherIds.length,
      needed,
      exact,
      allowed: null,
    });
    topKRows.push(row);
    for (const token of penalized) gatherIds.push(row * vocab + token);
  });

  // Record at most one argmax, one top-k and one gather for the whole batch, then read them together.
  const temporaries: Tensor[] = [];
  const keep = <T extends Tensor>(tensor: T): T => {
    temporaries.push(tensor);
    return tensor;
  };
  try {
    const argmaxIds = topKRows.length + fullRows.length < rows ? keep(backend.argmax(logits)) : null;
    let top: { values: Tensor; indices: Tensor } | null = null;
    if (topKRows.length > 0) {
      const source =
        topKRows.length === rows
          ? logits
          : keep(backend.embedding(logits, keep(backend.upload(Uint32Array.from(topKRows), [topKRows.length], "u32"))));
      top = backend.topK(source, k);
      keep(top.values);
      keep(top.indices);
    }
    let gathered: Tensor | null = null;
    if (gatherIds.length > 0) {
      // Embedding over logits seen as a one-column table gathers single logits: row·vocab + token.
      const table = keep(backend.reshape(logits, [rows * vocab, 1]));
      const ids = keep(backend.upload(Uint32Array.from(gatherIds), [gatherIds.length], "u32"));
      gathered = keep(backend.embedding(table, ids));
    }
    const [argmaxHost, valuesHost, indicesHost, gatheredHost] = await Promise.all([
      argmaxIds && backend.read(argmaxIds),
      top && backend.read(top.values),
      top && backend.read(top.indices),
      gathered && backend.read(gathered),
    ]);

    const tokens: number[] = new Array<number>(rows);
    plans.forEach((plan, row) => {
      if (plan.allowed) return; // read whole below
      if (plan.topKRow < 0) {
        tokens[row] = argmaxHost![row]!;
        return;
      }
      const { sampler } = plan;
      const base = plan.topKRow * k;
      // Tokens neither fetched nor penalized have logits ≤ the k-th largest: a candidate at or above it
      // is surely ranked right, so the sure candidates are a prefix of the true penalized ranking.
      const threshold = k < vocab ? valuesHost![base + k - 1]! : -Infinity;
      const candidates: Candidate[] = [];
      for (let i = 0; i < k; i++) {
        const id = indicesHost![base + i]!;
        if (!sampler.isPenalized(id)) candidates.push({ id, value: valuesHost![base + i]! });
      }
      plan.penalized.forEach((id, i) => {
        const value = sampler.penalize(id, gatheredHost![plan.gatherOffset + i]!);
        if (value >= threshold) candidates.push({ id, value });
      });
      if (candidates.length < (plan.exact ? plan.needed : 1)) {
        fullRows.push(row); // heavy penalties pushed the top below the fetched window: rare, read the row
        return;
      }
      tokens[row] = choose(sampler, candidates.sort(byRank));
    });

    // Rare fallback: the whole row to the host, penalized there, and its top `needed` taken exactly.
    const rowSlices = fullRows.map((row) => keep(backend.slice(logits, 0, row, row + 1)));
    const rowValues = await Promise.all(rowSlices.map((slice) => backend.read(slice)));
    fullRows.forEach((row, i) => {
      const plan = plans[row]!;
      const values = Float64Array.from(rowValues[i]!);
      for (const id of plan.penalized) values[id] = plan.sampler.penalize(id, values[id]!);
      if (plan.allowed) maskRow(values, plan.allowed);
      const ranked = selectTop(values, plan.needed);
      if (ranked.length === 0) throw new Error("constrained decoding: the constraint allows no token here");
      tokens[row] = choose(plan.sampler, ranked);
    });
    return tokens;
  } finally {
    for (const tensor of temporaries) backend.free(tensor);
  }
}

/** Tokens the mask does not allow get −∞, which selectTop never picks. */
function maskRow(values: Float64Array, allowed: Uint32Array): void {
  for (let id = 0; id < values.length; id++) {
    if (((allowed[id >>> 5] ?? 0) & (1 << (id & 31))) === 0) values[id] = -Infinity;
  }
}

/** The n best candidates of a whole row, ranked (−∞ never); a bounded insertion pass (n ≤ CANDIDATE_CAP). */
function selectTop(values: Float64Array, n: number): Candidate[] {
  const best: Candidate[] = [];
  for (let id = 0; id < values.length; id++) {
    const value = values[id]!;
    if (value === -Infinity) continue;
    if (best.length === n && value <= best[n - 1]!.value) continue; // ties keep the lower id already in
    const candidate = { id, value };
    let at = best.length;
    while (at > 0 && byRank(candidate, best[at - 1]!) < 0) at--;
    best.splice(at, 0, candidate);
    if (best.length > n) best.pop();
  }
  return best;
}

/** Pick from ranked, penalized candidates: temperature → top_k → min_p → top_p → a seeded draw. */
function choose(sampler: SequenceSampler, ranked: readonly Candidate[]): number {
  const { temperature, topK, minP, topP } = sampler.params;
  if (temperature === 0) return ranked[0]!.id;
  let n = topK > 0 ? Math.min(topK, ranked.length) : ranked.length;
  // Unnormalized probabilities relative to the most likely token (weight 1): descending, like `ranked`.
  const weights = new Float64Array(n);
  for (let i = 0; i < n; i++) weights[i] = Math.exp((ranked[i]!.value - ranked[0]!.value) / temperature);
  // min_p: keep tokens at least minP times as likely as the most likely one.
  while (n > 1 && weights[n - 1]! < minP) n--;
  if (topP < 1) {
    // Nucleus over what is left (renormalized): the smallest prefix whose mass reaches topP, at least one.
    const target = topP * sum(weights, n);
    let mass = 0;
    let kept = 0;
    while (kept < n && mass < target) mass += weights[kept++]!;
    n = Math.max(1, kept);
  }
  let u = sampler.uniform() * sum(weights, n);
  for (let i = 0; i < n; i++) {
    u -= weights[i]!;
    if (u < 0) return ranked[i]!.id;
  }
  return ranked[n - 1]!.id; // rounding left u a hair above zero
}

function sum(values: Float64Array, n: number): number {
  let total = 0;
  for (let i = 0; i < n; i++) total += values[i]!;
  return total;
}
