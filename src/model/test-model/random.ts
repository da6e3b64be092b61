/**
 * Seeded randomness for test-model weights: xoshiro128** seeded through splitmix32, normals by
 * Box–Muller. Every row of every tensor gets its own stream, keyed by (seed, tensor name, row), so a
 * tensor can be generated in chunks of rows, one row can be regenerated on its own (the untied LM
 * head reuses embedding rows), and the same seed gives the same bytes whatever the shard layout,
 * dtype or quantization. All arithmetic is 32-bit integer or IEEE double (V8's Math.log/cos/sin are
 * fdlibm ports, identical on every platform), so the values are reproducible byte for byte.
 */

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

/** splitmix32's output function: a bijective avalanche of a 32-bit word. */
function mix32(value: number): number {
  let z = (value + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class RowRandom {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private readonly seedLow: number;
  private readonly seedHigh: number;

  /** `seed` is any non-negative safe integer. */
  constructor(seed: number) {
    this.seedLow = seed >>> 0;
    this.seedHigh = Math.floor(seed / 2 ** 32) >>> 0;
  }

  /** Restart the stream for `row` of tensor `name`. */
  start(name: string, row: number): this {
    let key = mix32(this.seedLow ^ mix32(this.seedHigh ^ mix32(fnv1a(name) ^ mix32(row))));
    this.s0 = key = mix32(key);
    this.s1 = key = mix32(key);
    this.s2 = key = mix32(key);
    this.s3 = mix32(key);
    // xoshiro's state must not be all zero; four avalanche outputs being zero is astronomically
    // unlikely, but cheap to rule out.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
    return this;
  }

  /** xoshiro128**: the next uniform uint32. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in (0, 1), never 0, so log() below is finite. */
  nextOpenUnit(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  /** Fill `out[offset .. offset+count)` with mean + std · N(0, 1). */
  fillNormal(out: Float32Array, offset: number, count: number, mean: number, std: number): void {
    let i = 0;
    for (; i + 1 < count; i += 2) {
      const radius = Math.sqrt(-2 * Math.log(this.nextOpenUnit())) * std;
      const angle = 2 * Math.PI * this.nextOpenUnit();
      out[offset + i] = mean + radius * Math.cos(angle);
      out[offset + i + 1] = mean + radius * Math.sin(angle);
    }
    if (i < count) {
      const radius = Math.sqrt(-2 * Math.log(this.nextOpenUnit())) * std;
      out[offset + i] = mean + radius * Math.cos(2 * Math.PI * this.nextOpenUnit());
    }
  }

  /** A uniformly random permutation of 0..n-1 (Fisher–Yates over this stream). */
  permutation(n: number): Uint32Array {
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.nextOpenUnit() * (i + 1));
      const swap = order[i]!;
      order[i] = order[j]!;
      order[j] = swap;
    }
    return order;
  }
}

function rotl(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}
