/** Float64 reference for rotary position embedding, written from MLX's definition of mx.fast.rope. */
import type { RopeOptions } from "../../backends/contract.js";

/**
 * x [tokens, heads, headDim] rotated by positions [tokens]: pair i of the first `dims` features turns
 * by position·scale·θ_i, θ_i = base^(−2i/dims) or inverseFrequencies[i]; other features pass through.
 */
export function rope(
  x: ArrayLike<number>,
  shape: readonly [number, number, number],
  positions: ArrayLike<number>,
  options: RopeOptions,
): Float64Array {
  const [tokens, heads, headDim] = shape;
  const { dims, traditional, base, scale, inverseFrequencies } = options;
  const half = dims / 2;
  const out = Float64Array.from(x);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < heads; h++) {
      const start = (t * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const theta = inverseFrequencies ? inverseFrequencies[i]! : base ** ((-2 * i) / dims);
        const angle = positions[t]! * scale * theta;
        const [first, second] = traditional ? [start + 2 * i, start + 2 * i + 1] : [start + i, start + i + half];
        const [x1, x2] = [x[first]!, x[second]!];
        out[first] = x1 * Math.cos(angle) - x2 * Math.sin(angle);
        out[second] = x1 * Math.sin(angle) + x2 * Math.cos(angle);
      }
    }
  }
  return out;
}
