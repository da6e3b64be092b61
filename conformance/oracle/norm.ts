/** Float64 references for rms_norm and softmax, and the 16-bit float encodings their tests need. */

/** x / sqrt(mean(x²) + eps) · weight for each row of x [rows, cols]. */
export function rmsNorm(x: ArrayLike<number>, weight: ArrayLike<number>, eps: number): Float64Array {
  const cols = weight.length;
  const out = new Float64Array(x.length);
  for (let start = 0; start < x.length; start += cols) {
    let sumOfSquares = 0;
    for (let c = 0; c < cols; c++) sumOfSquares += x[start + c]! ** 2;
    const inverseRms = 1 / Math.sqrt(sumOfSquares / cols + eps);
    for (let c = 0; c < cols; c++) out[start + c] = x[start + c]! * inverseRms * weight[c]!;
  }
  return out;
}

/** exp(x − max) / Σ exp(x − max) over each row of `cols` values. */
export function softmax(x: ArrayLike<number>, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let start = 0; start < x.length; start += cols) {
    let max = -Infinity;
    for (let c = 0; c < cols; c++) max = Math.max(max, x[start + c]!);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(x[start + c]! - max);
    for (let c = 0; c < cols; c++) out[start + c] = Math.exp(x[start + c]! - max) / sum;
  }
  return out;
}
