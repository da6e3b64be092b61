/**
 * MLX's affine quantization, reproduced bit for bit so generated test models are "quantized exactly
 * as mlx-lm would". For each group of `groupSize` consecutive values of a row, in float32 arithmetic:
 *   scale = max((max − min) / (2^bits − 1), 1e-7), negated unless |min| > |max|;
 *   edge = min if |min| > |max| else max; q0 = round(edge / scale);
 *   if q0 ≠ 0 the scale is refined to edge / q0 and the bias is edge, else the bias is 0 —
 *   so the group's extreme value is represented exactly;
 *   q = clip(round((w − bias) / scale), 0, 2^bits − 1), rounding half to even.
 * Values are packed 32/bits per uint32, the first in the lowest bits. Input is float32 (MLX computes
 * in the input's dtype; quantizing bf16 or f16 weights the same way would need their rounding too).
 */
export interface AffineQuantized {
  /** [rows, cols·bits/32] */
  weight: Uint32Array;
  /** [rows, cols/groupSize] */
  scales: Float32Array;
  biases: Float32Array;
}

const f32 = Math.fround;

/** Round half to even, as MLX (and numpy) round. */
function roundHalfEven(value: number): number {
  return Math.abs(value % 1) === 0.5 ? 2 * Math.round(value / 2) : Math.round(value);
}

export function quantizeAffine(
  values: Float32Array,
  rows: number,
  cols: number,
  groupSize: 32 | 64 | 128,
  bits: 4 | 8,
): AffineQuantized {
  if (values.length !== rows * cols) throw new Error(`quantizeAffine: ${values.length} values for [${rows}, ${cols}]`);
  if (cols % groupSize !== 0)
    throw new Error(`quantizeAffine: ${cols} columns are not a multiple of the group size ${groupSize}`);
  const levels = 2 ** bits - 1;
  const perWord = 32 / bits;
  const groups = cols / groupSize;
  const weight = new Uint32Array((rows * cols) / perWord);
  const scales = new Float32Array(rows * groups);
  const biases = new Float32Array(rows * groups);
  const epsilon = f32(1e-7);
  for (let row = 0; row < rows; row++) {
    for (let group = 0; group < groups; group++) {
      const start = row * cols + group * groupSize;
      let max = -Infinity;
      let min = Infinity;
      for (let i = 0; i < groupSize; i++) {
        max = Math.max(max, values[start + i]!);
        min = Math.min(min, values[start + i]!);
      }
      const minIsEdge = Math.abs(min) > Math.abs(max);
      let scale = Math.max(f32(f32(max - min) / levels), epsilon);
      if (!minIsEdge) scale = -scale;
      const edge = minIsEdge ? min : max;
      const q0 = roundHalfEven(f32(edge / scale));
      if (q0 !== 0) scale = f32(edge / q0);
      const bias = q0 === 0 ? 0 : edge;
      scales[row * groups + group] = scale;
      biases[row * groups + group] = bias;
      for (let i = 0; i < groupSize; i++) {
        const q = Math.min(levels, Math.max(0, roundHalfEven(f32(f32(values[start + i]! - bias) / scale))));
        const index = start + i;
        weight[Math.floor(index / perWord)]! |= q << (bits * (index % perWord));
      }
    }
  }
  return { weight, scales, biases };
}
