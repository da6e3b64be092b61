/**
 * Float32 → the dtype a model is stored in (bf16, f16, f32), in bulk: weights of the big presets run
 * to billions of values, so this works on the bit patterns of whole typed arrays rather than one
 * DataView call per value. Both narrowings round to nearest, ties to even, as numpy's and MLX's
 * astype do; f16 handles subnormals and overflows to ±Infinity. Typed arrays use the host's byte
 * order, which is little-endian on every platform Node runs on — the order safetensors wants.
 */
import type { SafetensorsDType } from "../safetensors.js";

export const TEST_MODEL_DTYPES = ["bf16", "f16", "f32"] as const;
export type TestModelDtype = (typeof TEST_MODEL_DTYPES)[number];

export const SAFETENSORS_DTYPE: Record<TestModelDtype, SafetensorsDType> = { bf16: "BF16", f16: "F16", f32: "F32" };
/** The names config.json's `torch_dtype` uses. */
export const TORCH_DTYPE: Record<TestModelDtype, string> = { bf16: "bfloat16", f16: "float16", f32: "float32" };
export const DTYPE_BYTES: Record<TestModelDtype, number> = { bf16: 2, f16: 2, f32: 4 };

function bfloat16Bits(bits: number): number {
  // No NaNs or infinities reach here (weights are finite normals), so the carry trick is exact.
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function float16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal half: a count of 2^-24 units. Below 2^-25 everything rounds to zero.
    if (halfExponent < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    const rest = significand & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    let units = significand >>> shift;
    if (rest > half || (rest === half && (units & 1) === 1)) units++;
    return sign | units; // rounding up to 0x400 lands exactly on the smallest normal
  }
  let result = (halfExponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (result & 1) === 1)) result++; // a carry may reach Infinity, correctly
  return sign | result;
}

let halfToFloat: Float32Array | null = null;

/** All 65536 halves widened once (256 KB), so rounding through f16 is a table lookup. */
function halfTable(): Float32Array {
  if (halfToFloat) return halfToFloat;
  halfToFloat = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const fraction = bits & 0x3ff;
    halfToFloat[bits] =
      exponent === 0
        ? sign * fraction * 2 ** -24
        : exponent === 0x1f
          ? fraction === 0
            ? sign * Infinity
            : NaN
          : sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return halfToFloat;
}

/** Round `values` in place to the nearest value representable in `dtype` (kept as float32). */
export function roundToDtype(values: Float32Array, dtype: TestModelDtype): void {
  if (dtype === "f32") return;
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  if (dtype === "bf16") {
    for (let i = 0; i < bits.length; i++) bits[i] = bfloat16Bits(bits[i]!) << 16;
  } else {
    const table = halfTable();
    for (let i = 0; i < bits.length; i++) values[i] = table[float16Bits(bits[i]!)]!;
  }
}

/** The bytes of `values` stored as `dtype`. */
export function encodeFloats(values: Float32Array, dtype: TestModelDtype): Uint8Array {
  if (dtype === "f32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  const narrow = dtype === "bf16" ? bfloat16Bits : float16Bits;
  for (let i = 0; i < bits.length; i++) out[i] = narrow(bits[i]!);
  return new Uint8Array(out.buffer);
}
