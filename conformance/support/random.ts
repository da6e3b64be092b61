/**
 * Seeded randomness for conformance inputs: fresh each run (the seed is printed), reproducible with
 * CONFORMANCE_SEED=N.
 */
export const SEED = process.env.CONFORMANCE_SEED
  ? Number(process.env.CONFORMANCE_SEED)
  : Math.floor(Math.random() * 2 ** 31);
let announced = false;

export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform floats in [-scale, scale). */
  floats(count: number, scale?: number): Float32Array;
  /** Standard normal floats times `scale`. */
  normals(count: number, scale?: number): Float32Array;
  integer(maxExclusive: number): number;
}

/** A generator for one test, derived from the run's seed and the test's name (mulberry32). */
export function random(name: string): Random {
  if (!announced) {
    announced = true;
    process.stdout.write(`conformance seed: ${SEED} (repeat with CONFORMANCE_SEED=${SEED})\n`);
  }
  let state = SEED >>> 0;
  for (let i = 0; i < name.length; i++) state = Math.imul(state ^ name.charCodeAt(i), 0x9e3779b1) >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    floats: (count, scale = 1) => Float32Array.from({ length: count }, () => (next() * 2 - 1) * scale),
    normals: (count, scale = 1) =>
      Float32Array.from(
        { length: count },
        () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()) * scale,
      ),
    integer: (maxExclusive) => Math.floor(next() * maxExclusive),
  };
}
