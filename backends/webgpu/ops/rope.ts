/** Rotary position embedding (kernels/rope.wgsl). */
import type { OpName, RopeOptions } from "../../contract.js";
import { Params, type GpuRuntime, type GpuTensor } from "../runtime.js";
import { grid1d, sizeOf } from "./grid.js";
import { checkRope } from "../../op-checks.js";

export const IMPLEMENTED_OPS: OpName[] = ["rope"];

/**
 * Per-pair rotation rates as 64-bit fixed-point fractions of a turn, [dims/2, 2] u32, cached per
 * runtime: a model uses one or two rope configurations on every layer of every forward.
 */
const turnTables = new WeakMap<GpuRuntime, Map<string, GpuTensor>>();
const MAX_CACHED_TABLES = 32;

/**
 * frac(radiansPerPosition / 2π) as [high word, low word] of a 0.64 fixed-point number. Computed in
 * float64, so the kernel's exact integer product with a position is as accurate as the definition.
 */
function turnFraction(radiansPerPosition: number): [number, number] {
  const turns = radiansPerPosition / (2 * Math.PI);
  const scaled = (turns - Math.floor(turns)) * 2 ** 32;
  const high = Math.floor(scaled);
  const low = Math.floor((scaled - high) * 2 ** 32);
  return [high >>> 0, low >>> 0];
}

function turnTable(runtime: GpuRuntime, options: RopeOptions): GpuTensor {
  const { dims, base, scale, inverseFrequencies } = options;
  const frequencies = inverseFrequencies ? Array.from(inverseFrequencies).join(",") : `base ${base}`;
  const key = `${dims} ${scale} ${frequencies}`;
  let tables = turnTables.get(runtime);
  if (!tables) {
    tables = new Map<string, GpuTensor>();
    turnTables.set(runtime, tables);
  }
  const cached = tables.get(key);
  if (cached) return cached;

  const halfDims = dims / 2;
  const words = new Uint32Array(halfDims * 2);
  for (let i = 0; i < halfDims; i++) {
    // θ_i = base^(−2i/dims) unless the model computed its own (llama3 scaling).
    const theta = inverseFrequencies ? inverseFrequencies[i]! : base ** ((-2 * i) / dims);
    words.set(turnFraction(scale * theta), 2 * i);
  }
  const table = runtime.allocate([halfDims, 2], "u32", "weights");
  runtime.upload(table, words);
  if (tables.size >= MAX_CACHED_TABLES) {
    const [oldestKey, oldest] = tables.entries().next().value!;
    tables.delete(oldestKey);
    runtime.release(oldest);
  }
  tables.set(key, table);
  return table;
}

/** Rotate x [tokens, heads, headDim] by the i32 positions [tokens] of its tokens. */
export function rope(runtime: GpuRuntime, x: GpuTensor, positions: GpuTensor, options: RopeOptions): GpuTensor {
  checkRope(x, positions, options);
  const [, heads, headDim] = x.shape as [number, number, number];
  const halfDims = options.dims / 2;
  const itemsPerHead = headDim - halfDims;
  const totalItems = (sizeOf(x.shape) / headDim) * itemsPerHead;
  const out = runtime.allocate(x.shape, "f32");
  if (totalItems === 0) return out;
  runtime.dispatch({
    file: "rope.wgsl",
    entryPoint: "rope",
    params: new Params()
      .u32(totalItems)
      .u32(itemsPerHead)
      .u32(heads)
      .u32(headDim)
      .u32(halfDims)
      .u32(options.traditional ? 1 : 0),
    bindings: [x, positions, turnTable(runtime, options), out],
    workgroups: grid1d(totalItems, 256),
  });
  return out;
}
