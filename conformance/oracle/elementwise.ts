/** Float64 references for elementwise ops, written from their definitions. */
export function add(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: a.length }, (_, i) => a[i]! + b[i % b.length]!);
}

export function mul(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: a.length }, (_, i) => a[i]! * b[i % b.length]!);
}

export function scale(x: ArrayLike<number>, factor: number): Float64Array {
  return Float64Array.from({ length: x.length }, (_, i) => x[i]! * factor);
}

export function silu(x: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: x.length }, (_, i) => x[i]! / (1 + Math.exp(-x[i]!)));
}

/** gelu, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function geluTanh(x: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: x.length }, (_, i) => {
    const v = x[i]!;
    return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  });
}
