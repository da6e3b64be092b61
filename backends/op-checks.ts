/**
 * Argument checks of contract ops that every backend makes identically, with the same words (the
 * conformance suite reads the messages): written once here.
 */
import type { RopeOptions, Tensor } from "./contract.js";

export function describeShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

/** rope(x [tokens, heads, headDim] f32, positions i32 [tokens], options). */
export function checkRope(x: Tensor, positions: Tensor, options: RopeOptions): void {
  const where = `rope: x ${describeShape(x.shape)}`;
  if (x.dtype !== "f32" || x.shape.length !== 3)
    throw new Error(`${where} ${x.dtype}: expects f32 [tokens, heads, headDim]`);
  const [tokens, , headDim] = x.shape as [number, number, number];
  if (positions.dtype !== "i32" || positions.shape.length !== 1 || positions.shape[0] !== tokens) {
    throw new Error(
      `${where}: positions must be i32 [${tokens}], got ${positions.dtype} ${describeShape(positions.shape)}`,
    );
  }
  const { dims, base, scale, inverseFrequencies } = options;
  if (!Number.isInteger(dims) || dims <= 0 || dims % 2 !== 0 || dims > headDim) {
    throw new Error(`${where}: dims must be even and in [2, ${headDim}], got ${dims}`);
  }
  if (inverseFrequencies && inverseFrequencies.length !== dims / 2) {
    throw new Error(`${where}: ${inverseFrequencies.length} inverse frequencies for ${dims / 2} rotated pairs`);
  }
  if (!inverseFrequencies && !(base > 0 && Number.isFinite(base)))
    throw new Error(`${where}: base must be > 0, got ${base}`);
  if (!Number.isFinite(scale)) throw new Error(`${where}: scale must be finite, got ${scale}`);
}
