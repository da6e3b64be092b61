/**
 * Conversions between float32 and the 16-bit float formats weights are stored in, done on the host
 * where a model prepares a small tensor itself (Gemma's 1 + w norm weights, rounded the way MLX
 * rounds them).
 */

const scratch = new DataView(new ArrayBuffer(4));

export function bfloat16ToFloat32(bits: number): number {
  scratch.setUint32(0, bits << 16);
  return scratch.getFloat32(0);
}

/** Round to the nearest bfloat16, ties to even (NaN stays NaN). */
export function float32ToBfloat16(value: number): number {
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function float16ToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** Round to the nearest float16, ties to even, overflowing to ±Infinity. */
export function float32ToFloat16(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  if (magnitude >= 65520) return sign | 0x7c00;
  if (magnitude < 2 ** -14) {
    // Subnormal: a multiple of 2^-24.
    return sign | roundHalfEven(magnitude * 2 ** 24);
  }
  const exponent = Math.floor(Math.log2(magnitude));
  const base = 2 ** exponent;
  // log2 can be off by one near powers of two; normalize so magnitude/base is in [1, 2).
  const e = magnitude / base >= 2 ? exponent + 1 : magnitude / base < 1 ? exponent - 1 : exponent;
  const mantissa = roundHalfEven((magnitude / 2 ** e - 1) * 1024);
  // A mantissa that rounds up to 1024 carries into the exponent, which the addition does for us.
  return sign | (((e + 15) << 10) + mantissa);
}

function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const rest = value - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Decode stored 16-bit floats (f16 or bf16) to float32. */
export function widen(bits: Uint16Array, dtype: "f16" | "bf16"): Float32Array {
  const out = new Float32Array(bits.length);
  const convert = dtype === "bf16" ? bfloat16ToFloat32 : float16ToFloat32;
  for (let i = 0; i < bits.length; i++) out[i] = convert(bits[i]!);
  return out;
}

/** Encode float32 values as 16-bit floats (f16 or bf16), rounding to nearest even. */
export function narrow(values: Float32Array, dtype: "f16" | "bf16"): Uint16Array {
  const out = new Uint16Array(values.length);
  const convert = dtype === "bf16" ? float32ToBfloat16 : float32ToFloat16;
  for (let i = 0; i < values.length; i++) out[i] = convert(values[i]!);
  return out;
}
