/**
 * Float64 references for attention and for the KV cache's storage formats, written from their
 * definitions over plain arrays: one sequence at a time, keys and values of every position in order.
 */
export interface AttentionShape {
  qHeads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  /** Keys more than this many positions before the query are masked; null: none. */
  slidingWindow: number | null;
}

/**
 * softmax(scale · q·kᵀ + mask) · v for the last `queryLength` positions of one sequence.
 * queries [queryLength, qHeads, headDim]; keys, values [contextLength, kvHeads, headDim]. The query at
 * row i sits at position contextLength − queryLength + i and sees keys at positions p with
 * position − window < p ≤ position; q head h reads kv head ⌊h / (qHeads / kvHeads)⌋ (GQA).
 */
export function attention(
  queries: ArrayLike<number>,
  keys: ArrayLike<number>,
  values: ArrayLike<number>,
  shape: AttentionShape,
): Float64Array {
  const { qHeads, kvHeads, headDim, scale, slidingWindow } = shape;
  const queryLength = queries.length / (qHeads * headDim);
  const contextLength = keys.length / (kvHeads * headDim);
  const group = qHeads / kvHeads;
  const out = new Float64Array(queries.length);
  const scores = new Float64Array(contextLength);
  for (let row = 0; row < queryLength; row++) {
    const position = contextLength - queryLength + row;
    const first = slidingWindow === null ? 0 : Math.max(0, position - slidingWindow + 1);
    for (let head = 0; head < qHeads; head++) {
      const kvHead = Math.floor(head / group);
      const query = (row * qHeads + head) * headDim;
      let best = -Infinity;
      for (let key = first; key <= position; key++) {
        const at = (key * kvHeads + kvHead) * headDim;
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += queries[query + d]! * keys[at + d]!;
        scores[key] = dot * scale;
        best = Math.max(best, dot * scale);
      }
      let total = 0;
      for (let key = first; key <= position; key++) {
        const weight = Math.exp(scores[key]! - best);
        scores[key] = weight;
        total += weight;
      }
      for (let key = first; key <= position; key++) {
        const weight = scores[key]! / total;
        const at = (key * kvHeads + kvHead) * headDim;
        for (let d = 0; d < headDim; d++) out[query + d]! += weight * values[at + d]!;
      }
    }
  }
  return out;
}

/** x rounded to the nearest IEEE half (ties to even), as a number. */
export function roundToHalf(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const magnitude = Math.abs(x);
  if (magnitude >= 65520) return Math.sign(x) * Infinity;
  let exponent = Math.floor(Math.log2(magnitude));
  if (2 ** exponent > magnitude) exponent--;
  if (2 ** (exponent + 1) <= magnitude) exponent++;
  const quantum = 2 ** (Math.max(exponent, -14) - 10);
  return Math.sign(x) * roundHalfToEven(magnitude / quantum) * quantum;
}

/** Rounding as WGSL's round(): to the nearest integer, ties to even. */
export function roundHalfToEven(x: number): number {
  const below = Math.floor(x);
  return x - below === 0.5 ? below + (below % 2) : Math.round(x);
}

/**
 * What affine quantization (MLX's: per group of `groupSize` consecutive values scale = (max − min) /
 * (2^bits − 1), bias = min, q = round((x − bias) / scale), both kept as f16) gives back for x.
 */
export function quantizeAffine(x: ArrayLike<number>, bits: 4 | 8, groupSize = 64): Float64Array {
  const out = new Float64Array(x.length);
  const top = 2 ** bits - 1;
  for (let start = 0; start < x.length; start += groupSize) {
    let low = Infinity;
    let high = -Infinity;
    for (let i = start; i < start + groupSize; i++) [low, high] = [Math.min(low, x[i]!), Math.max(high, x[i]!)];
    const scale = roundToHalf(Math.fround(Math.fround(high - low) / top));
    const bias = roundToHalf(low);
    for (let i = start; i < start + groupSize; i++) {
      // The level is chosen in float32, as the contract's storage rule (and both backends) compute it:
      // in float64 a value near a rounding tie can land one level away.
      const quotient = Math.fround(Math.fround(Math.fround(x[i]!) - bias) / scale);
      const level = scale > 0 ? Math.min(top, Math.max(0, roundHalfToEven(quotient))) : 0;
      out[i] = scale * level + bias;
    }
  }
  return out;
}
