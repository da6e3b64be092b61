/**
 * Rope's rotation rates as the addon takes them (native/src/ops.cpp, ropeExact): per rotated pair, the
 * rate as a 0.64 fixed-point fraction of a turn, [high, low] 32-bit words, computed here in float64 so
 * position · rate is exact on the compute thread at any position. Kept per set of options: a model
 * asks for the same one or two on every layer of every step.
 */
import type { RopeOptions } from "../contract.js";

const KEPT = 32;

export class RopeRates {
  private readonly rates = new Map<string, number[]>();

  get(options: RopeOptions): number[] {
    const frequencies = options.inverseFrequencies
      ? Array.from(options.inverseFrequencies).join(",")
      : `base ${options.base}`;
    const key = `${options.dims} ${options.scale} ${frequencies}`;
    let words = this.rates.get(key);
    if (!words) {
      words = ropeTurns(options);
      if (this.rates.size >= KEPT) this.rates.delete(this.rates.keys().next().value!);
      this.rates.set(key, words);
    }
    return words;
  }
}

function ropeTurns(options: RopeOptions): number[] {
  const { dims, base, scale, inverseFrequencies } = options;
  const words: number[] = [];
  for (let i = 0; i < dims / 2; i++) {
    // θ_i = base^(−2i/dims) unless the model computed its own (llama3 scaling).
    const theta = inverseFrequencies ? inverseFrequencies[i]! : base ** ((-2 * i) / dims);
    const turns = (scale * theta) / (2 * Math.PI);
    const scaled = (turns - Math.floor(turns)) * 2 ** 32;
    const high = Math.floor(scaled);
    words.push(high >>> 0, Math.floor((scaled - high) * 2 ** 32) >>> 0);
  }
  return words;
}
