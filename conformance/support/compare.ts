/**
 * Comparing a backend's output with the float64 oracle by relative norm error, ‖actual − expected‖ /
 * ‖expected‖, with a message that names the op, the shape, the error and the tolerance, and points at
 * the worst element — so a broken kernel is found from the failure line alone.
 */
export interface Tolerance {
  /** Largest relative norm error allowed. */
  relative: number;
}

/** Stated per storage dtype of the inputs: f32 math, or weights rounded to 16 bits. */
export const TOLERANCE = {
  f32: { relative: 1e-5 },
  f16: { relative: 2e-3 },
  bf16: { relative: 1.6e-2 },
} satisfies Record<string, Tolerance>;

export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let difference = 0;
  let norm = 0;
  for (let i = 0; i < expected.length; i++) {
    const delta = actual[i]! - expected[i]!;
    difference += delta * delta;
    norm += expected[i]! * expected[i]!;
  }
  return Math.sqrt(difference) / Math.max(Math.sqrt(norm), 1e-30);
}

export function checkClose(
  op: string,
  shape: readonly number[],
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: Tolerance,
): void {
  const where = `${op} ${JSON.stringify(shape)}`;
  if (actual.length !== expected.length) {
    throw new Error(`${where}: got ${actual.length} values, expected ${expected.length}`);
  }
  let worst = 0;
  let worstDelta = -1;
  for (let i = 0; i < expected.length; i++) {
    const delta = Math.abs(actual[i]! - expected[i]!);
    if (!(delta <= worstDelta)) [worst, worstDelta] = [i, Number.isNaN(delta) ? Infinity : delta];
  }
  const error = relativeError(actual, expected);
  if (!(error <= tolerance.relative)) {
    throw new Error(
      `${where}: relative error ${error.toExponential(3)} > tolerance ${tolerance.relative.toExponential(1)}; ` +
        `worst at index ${worst}: got ${actual[worst]}, expected ${expected[worst]}`,
    );
  }
}

export function checkEqual(
  op: string,
  shape: readonly number[],
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
): void {
  const where = `${op} ${JSON.stringify(shape)}`;
  if (actual.length !== expected.length)
    throw new Error(`${where}: got ${actual.length} values, expected ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) throw new Error(`${where}: index ${i}: got ${actual[i]}, expected ${expected[i]}`);
  }
}
