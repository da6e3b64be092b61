/**
 * Float64 references for matmul and embedding, written from the definitions: dequantize every weight
 * exactly as stored (16-bit patterns decoded, MLX affine values s·q + b in float64), then multiply or
 * gather. Also the encoders the tests use to make stored weights: float → f16/bf16 bit patterns
 * (round to nearest even) and an MLX-style affine quantizer.
 */

import { bfloatBitsToFloat, floatToBfloatBits, floatToHalfBits, halfBitsToFloat } from "./dtypes.js";

export type ScaleDtype = "f32" | "f16" | "bf16";

export function encode(
  values: ArrayLike<number>,
  dtype: ScaleDtype,
): { stored: Float32Array | Uint16Array; exact: Float64Array } {
  if (dtype === "f32") {
    const stored = Float32Array.from(values);
    return { stored, exact: Float64Array.from(stored) };
  }
  const toBits = dtype === "f16" ? floatToHalfBits : floatToBfloatBits;
  const fromBits = dtype === "f16" ? halfBitsToFloat : bfloatBitsToFloat;
  const stored = Uint16Array.from(values, (value) => toBits(value));
  return { stored, exact: Float64Array.from(stored, (bits) => fromBits(bits)) };
}

export interface QuantizedHost {
  /** uint32 [rows, cols·bits/32], first value of each word in its lowest bits. */
  weight: Uint32Array;
  /** [rows, cols/groupSize] as stored: Float32Array for f32, raw 16-bit patterns otherwise. */
  scales: Float32Array | Uint16Array;
  biases: Float32Array | Uint16Array;
  /** The matrix the stored form means, s·q + b with the stored s and b, in float64 [rows, cols]. */
  dequantized: Float64Array;
}

/**
 * MLX affine quantization from its definition: per group of `groupSize` consecutive values of a row,
 * scale = (max − min)/(2^bits − 1), bias = min, q = round((w − min)/scale) clamped to [0, 2^bits − 1].
 * Scale and bias are then stored in `scaleDtype`; `dequantized` uses those stored values, so the
 * oracle and the kernel see the same weights and only accumulation error is left to compare.
 */
export function quantize(
  values: Float32Array,
  rows: number,
  cols: number,
  bits: 4 | 8,
  groupSize: number,
  scaleDtype: ScaleDtype,
): QuantizedHost {
  if (cols % groupSize !== 0) throw new Error(`quantize: ${cols} columns are not a multiple of ${groupSize}`);
  const levels = 2 ** bits - 1;
  const groupsPerRow = cols / groupSize;
  const rawScales = new Float64Array(rows * groupsPerRow);
  const rawBiases = new Float64Array(rows * groupsPerRow);
  const codes = new Uint8Array(rows * cols);
  for (let row = 0; row < rows; row++) {
    for (let group = 0; group < groupsPerRow; group++) {
      const start = row * cols + group * groupSize;
      let min = Infinity;
      let max = -Infinity;
      for (let i = start; i < start + groupSize; i++) {
        min = Math.min(min, values[i]!);
        max = Math.max(max, values[i]!);
      }
      const scale = (max - min) / levels;
      rawScales[row * groupsPerRow + group] = scale;
      rawBiases[row * groupsPerRow + group] = min;
      for (let i = start; i < start + groupSize; i++) {
        const q = scale === 0 ? 0 : Math.round((values[i]! - min) / scale);
        codes[i] = Math.min(levels, Math.max(0, q));
      }
    }
  }
  const scales = encode(rawScales, scaleDtype);
  const biases = encode(rawBiases, scaleDtype);
  const perWord = 32 / bits;
  const weight = new Uint32Array((rows * cols) / perWord);
  for (let i = 0; i < codes.length; i++) weight[Math.floor(i / perWord)]! |= codes[i]! << ((i % perWord) * bits);
  const dequantized = dequantize(weight, scales.exact, biases.exact, rows, cols, bits, groupSize);
  return { weight, scales: scales.stored, biases: biases.stored, dequantized };
}

/** The values of a packed quantized matrix, decoded from its stored form alone. */
export function dequantize(
  weight: Uint32Array,
  scales: Float64Array,
  biases: Float64Array,
  rows: number,
  cols: number,
  bits: 4 | 8,
  groupSize: number,
): Float64Array {
  const perWord = 32 / bits;
  const mask = 2 ** bits - 1;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) {
    const q = (weight[Math.floor(i / perWord)]! >>> ((i % perWord) * bits)) & mask;
    const group = Math.floor(i / groupSize);
    out[i] = scales[group]! * q + biases[group]!;
  }
  return out;
}

/** x [M, K] · wᵀ with w [N, K] → [M, N], in float64. */
export function matmul(x: ArrayLike<number>, w: ArrayLike<number>, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let row = 0; row < m; row++) {
    for (let col = 0; col < n; col++) {
      let sum = 0;
      for (let i = 0; i < k; i++) sum += x[row * k + i]! * w[col * k + i]!;
      out[row * n + col] = sum;
    }
  }
  return out;
}

/** Rows `ids` of table [rows, cols] → [ids.length, cols]. */
export function embedding(table: ArrayLike<number>, cols: number, ids: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ids.length * cols);
  for (let t = 0; t < ids.length; t++) {
    for (let c = 0; c < cols; c++) out[t * cols + c] = table[ids[t]! * cols + c]!;
  }
  return out;
}
