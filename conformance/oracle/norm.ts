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

const scratch = new DataView(new ArrayBuffer(4));

function float32Bits(value: number): number {
  scratch.setFloat32(0, value, true);
  return scratch.getUint32(0, true);
}

/** Round to the nearest bfloat16 (ties to even), as raw bits: the top half of the f32 pattern. */
export function bfloat16Bits(value: number): number {
  const bits = float32Bits(value);
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBfloat16Bits(bits: number): number {
  scratch.setUint32(0, (bits & 0xffff) << 16, true);
  return scratch.getFloat32(0, true);
}

/** Round to the nearest IEEE half (ties to even), as raw bits, subnormals and overflow included. */
export function float16Bits(value: number): number {
  const bits = float32Bits(value);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  // Normal halves keep 10 of the 23 mantissa bits; subnormals shift the implicit 1 in as well.
  const [kept, shift] = halfExponent > 0 ? [(halfExponent << 10) | (mantissa >>> 13), 13] : [0, 14 - halfExponent];
  if (halfExponent <= 0 && shift > 24) return sign;
  const significand = halfExponent > 0 ? mantissa : mantissa | 0x800000;
  let half = halfExponent > 0 ? kept : significand >>> shift;
  const remainder = significand & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (remainder > halfway || (remainder === halfway && half & 1)) half++; // may carry into the exponent
  return sign | half;
}

export function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}
