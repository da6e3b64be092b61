/** References for argmax and top-k, written from their definitions (exact: they only compare). */

/** Index of the largest value of each row; the lowest index on ties; NaN never wins (all NaN → 0). */
export function argmax(x: ArrayLike<number>, cols: number): Uint32Array {
  const rows = x.length / cols;
  const out = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = -1;
    for (let c = 0; c < cols; c++) {
      const value = x[r * cols + c]!;
      if (!Number.isNaN(value) && (best < 0 || value > x[r * cols + best]!)) best = c;
    }
    out[r] = Math.max(best, 0);
  }
  return out;
}

/** The k largest of each row, descending; equal values in index order; NaN after everything. */
export function topK(x: ArrayLike<number>, cols: number, k: number): { values: Float64Array; indices: Uint32Array } {
  const rows = x.length / cols;
  const values = new Float64Array(rows * k);
  const indices = new Uint32Array(rows * k);
  const rank = (value: number) => (Number.isNaN(value) ? -Infinity : value);
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: cols }, (_, c) => c);
    order.sort((a, b) => {
      const [va, vb] = [x[r * cols + a]!, x[r * cols + b]!];
      if (Number.isNaN(va) !== Number.isNaN(vb)) return Number.isNaN(va) ? 1 : -1;
      return rank(vb) - rank(va) || a - b;
    });
    for (let i = 0; i < k; i++) {
      values[r * k + i] = x[r * cols + order[i]!]!;
      indices[r * k + i] = order[i]!;
    }
  }
  return { values, indices };
}
