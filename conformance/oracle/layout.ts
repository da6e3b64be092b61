/** References for slice, concat and transpose on row-major flat arrays, by coordinates. */

function strides(shape: readonly number[]): number[] {
  return shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
}

/** The coordinates of flat index `index` in `shape`. */
function coordinates(index: number, shape: readonly number[]): number[] {
  return strides(shape).map((stride, d) => Math.floor(index / stride) % shape[d]!);
}

function flatIndex(coords: readonly number[], shape: readonly number[]): number {
  return strides(shape).reduce((sum, stride, d) => sum + coords[d]! * stride, 0);
}

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function slice(
  x: ArrayLike<number>,
  shape: readonly number[],
  axis: number,
  start: number,
  end: number,
): number[] {
  const outShape = shape.map((dim, d) => (d === axis ? end - start : dim));
  return Array.from({ length: sizeOf(outShape) }, (_, i) => {
    const coords = coordinates(i, outShape);
    coords[axis]! += start;
    return x[flatIndex(coords, shape)]!;
  });
}

export function concat(
  parts: readonly { data: ArrayLike<number>; shape: readonly number[] }[],
  axis: number,
): number[] {
  const outShape = parts[0]!.shape.map((dim, d) =>
    d === axis ? parts.reduce((sum, p) => sum + p.shape[axis]!, 0) : dim,
  );
  return Array.from({ length: sizeOf(outShape) }, (_, i) => {
    const coords = coordinates(i, outShape);
    for (const part of parts) {
      if (coords[axis]! < part.shape[axis]!) return part.data[flatIndex(coords, part.shape)]!;
      coords[axis]! -= part.shape[axis]!;
    }
    throw new Error("unreachable: coordinate beyond the last part");
  });
}

/** Output dimension i is input dimension permutation[i]. */
export function transpose(x: ArrayLike<number>, shape: readonly number[], permutation: readonly number[]): number[] {
  const outShape = permutation.map((axis) => shape[axis]!);
  return Array.from({ length: sizeOf(outShape) }, (_, i) => {
    const outCoords = coordinates(i, outShape);
    const inCoords = new Array<number>(shape.length);
    permutation.forEach((axis, d) => (inCoords[axis] = outCoords[d]!));
    return x[flatIndex(inCoords, shape)]!;
  });
}
