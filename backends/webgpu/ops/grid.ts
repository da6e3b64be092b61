/** Workgroup grids for 1-D work larger than one dimension allows (65,535 workgroups per dimension). */
export function grid1d(items: number, itemsPerWorkgroup: number, maxPerDimension = 65535): [number, number] {
  const groups = Math.max(1, Math.ceil(items / itemsPerWorkgroup));
  if (groups <= maxPerDimension) return [groups, 1];
  return [maxPerDimension, Math.ceil(groups / maxPerDimension)];
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

export function describeShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
