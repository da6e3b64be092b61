import { describe, expect, it } from "vitest";
import type { KvCacheSpec } from "../../backends/contract.js";
import { decodeTailRows, planDecode } from "../../backends/webgpu/ops/attention-decode.js";
import { kvLayout } from "../../backends/webgpu/ops/kv-cache.js";

const spec = (headDim: number): KvCacheSpec => ({
  layers: 1,
  kvHeads: 8,
  headDim,
  blockSize: 16,
  blockCount: 4,
  storage: { kind: "float", dtype: "f16" },
});

describe("WebGPU attention planning: which kernel takes which rows", () => {
  it("hands the decode kernel a tail of less than half a prefill work item, after at least one whole item", () => {
    expect(decodeTailRows(65, 16)).toBe(1); // a hot follow-up's 65th row
    expect(decodeTailRows(71, 16)).toBe(7);
    expect(decodeTailRows(72, 16)).toBe(0); // half an item: the prefill kernel keeps it
    expect(decodeTailRows(64, 16)).toBe(0);
    expect(decodeTailRows(7, 16)).toBe(0); // no whole item: the sequence's rows stay together
    expect(decodeTailRows(97, 4)).toBe(1);
    expect(decodeTailRows(150, 4)).toBe(0);
  });

  it("shapes the decode kernel from headDim: lanes per key, shuffles only where a subgroup spans them", () => {
    const plan = (headDim: number, groupSize: number, rows: number, subgroup: number) =>
      planDecode(spec(headDim), kvLayout(spec(headDim)), groupSize, rows, subgroup);
    expect(plan(128, 4, 1, 32)).toMatchObject({
      headsPerChunk: 4,
      headChunks: 1,
      rowsPerItem: 1,
      constants: { LANES: 16, SUBGROUP_SUM: 1, HEAD_DIM: 128 },
    });
    expect(plan(128, 4, 1, 8).constants.SUBGROUP_SUM).toBe(0);
    expect(plan(64, 4, 1, 8).constants).toMatchObject({ LANES: 8, SUBGROUP_SUM: 1 });
    expect(plan(80, 4, 1, 32).constants.LANES).toBe(16); // 10 lanes hold the row, padded to a power of two
    // Without GQA a quad holds four rows of one head; a longer group is cut into chunks of four heads.
    expect(plan(64, 1, 3, 32)).toMatchObject({ headsPerChunk: 1, rowsPerItem: 4 });
    expect(plan(64, 1, 1, 32).rowsPerItem).toBe(1);
    expect(plan(128, 6, 1, 32)).toMatchObject({ headsPerChunk: 4, headChunks: 2, rowsPerItem: 1 });
    expect(() => plan(12, 4, 1, 32)).toThrow("headDim that is a multiple of 8");
  });
});
