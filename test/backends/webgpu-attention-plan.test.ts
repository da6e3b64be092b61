import { describe, expect, it } from "vitest";
import type { KvCacheSpec } from "../../backends/contract.js";
import { decodeTailRows, planDecode } from "../../backends/webgpu/ops/attention-decode.js";
import { planPrefill, planPrefillMatrix, wideWorkgroups } from "../../backends/webgpu/ops/attention-prefill.js";
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

  it("shapes the prefill kernel to the device: 512-thread workgroups where allowed, narrower where memory is short", () => {
    // sharedBytes and maxComputeInvocationsPerWorkgroup of: an H200 through Dawn; WebGPU's defaults.
    const plan = (headDim: number, sharedBytes: number, maxThreads: number) =>
      planPrefill(spec(headDim), kvLayout(spec(headDim)), 4, sharedBytes, true, 32, maxThreads);
    const workgroupBytes = (p: NonNullable<ReturnType<typeof plan>>) =>
      4 * (p.blockM * (p.threads / (p.blockM / 4)) * 4 + Number(p.constants.STAGE_VEC4S) * 4);
    const h200 = (headDim: number) => plan(headDim, 49152, 1024)!;
    expect(h200(64)).toMatchObject({ blockM: 128, threads: 256, rowsPerItem: 32 });
    expect(workgroupBytes(h200(64))).toBe(24 * 1024);
    expect(h200(128)).toMatchObject({ blockM: 128, threads: 512, chunkDims: 64, chunkKeys: 32 });
    expect(workgroupBytes(h200(128))).toBe(48 * 1024);
    expect(h200(256)).toMatchObject({ blockM: 64, threads: 512 });
    expect([64, 128, 256].map((headDim) => wideWorkgroups(h200(headDim)))).toEqual([true, true, true]);
    // 256 threads at most: half the vectors at headDim 128, in 24 KiB, split as before.
    const narrow = plan(128, 49152, 256)!;
    expect(narrow).toMatchObject({ blockM: 64, threads: 256, chunkDims: 32, chunkKeys: 16 });
    expect(workgroupBytes(narrow)).toBe(24 * 1024);
    expect(wideWorkgroups(narrow)).toBe(false);
    // 32 KiB of workgroup memory (lavapipe's): 128 vectors' probabilities alone would fill it, so 64;
    // headDim 96 keeps 128 vectors in 384 threads (the conformance suite's wide case).
    expect(plan(128, 32768, 1024)).toMatchObject({ blockM: 64, threads: 256 });
    expect(plan(96, 32768, 1024)).toMatchObject({ blockM: 128, threads: 384 });
    // Where memory is short, narrower workgroups that fit it (not the decode kernel).
    for (const [headDim, shared, threads] of [
      [64, 16384, 256],
      [128, 16384, 1024],
      [256, 32768, 1024],
      [32, 49152, 1024],
    ] as const) {
      const p = plan(headDim, shared, threads);
      expect(p, `headDim ${headDim}, ${shared} B, ${threads} threads`).not.toBeNull();
      expect(workgroupBytes(p!)).toBeLessThanOrEqual(shared);
      expect(p!.threads).toBeLessThanOrEqual(threads);
    }
  });

  it("takes the tile max by shuffles only where the key threads form aligned groups of a power of two", () => {
    // XOR shuffles over 12 lanes (headDim 96) mixed two vectors' maxima: found by the conformance
    // suite on an H200 (32-lane subgroups), where it put 15% of the outputs off.
    const subgroupMax = (headDim: number, subgroup: number) =>
      planPrefill(spec(headDim), kvLayout(spec(headDim)), 4, 49152, true, subgroup, 1024)!.constants.SUBGROUP_MAX;
    expect(subgroupMax(96, 32)).toBe(0);
    expect(subgroupMax(128, 32)).toBe(1);
    expect(subgroupMax(64, 8)).toBe(1);
    expect(subgroupMax(128, 8)).toBe(0); // 16 key threads do not fit in a subgroup of 8
  });

  it("sends f16 caches at headDim 64 and 128 in blocks of whole 16-key groups to the matrix kernel", () => {
    const matrix = (headDim: number, groupSize: number, over: Partial<KvCacheSpec> = {}) => {
      const s = { ...spec(headDim), ...over };
      return planPrefillMatrix(s, kvLayout(s), groupSize);
    };
    expect(matrix(128, 4)).toMatchObject({
      file: "attention_prefill_mma.wgsl",
      blockM: 64,
      threads: 128,
      headsPerChunk: 4,
      headChunks: 1,
      rowsPerItem: 16,
    });
    expect(wideWorkgroups(matrix(128, 4)!)).toBe(true); // split to 384 workgroups, not 1024
    // A benchmark's A/B copy of the kernel is planned the same way.
    const copy = planPrefillMatrix(spec(128), kvLayout(spec(128)), 4, "copy.wgsl")!;
    expect(copy.file).toBe("copy.wgsl");
    expect(wideWorkgroups(copy)).toBe(true);
    expect(matrix(64, 4)?.rowsPerItem).toBe(16);
    expect(matrix(64, 7)).toMatchObject({ headsPerChunk: 7, rowsPerItem: 8 }); // 56 of 64 vectors
    expect(matrix(128, 1)?.rowsPerItem).toBe(64);
    expect(matrix(128, 4, { blockSize: 32 })).not.toBeNull();
    expect(matrix(96, 4)).toBeNull(); // headDim: the output matrices of 64 and 128 only
    expect(matrix(256, 4)).toBeNull();
    expect(matrix(128, 4, { blockSize: 8 })).toBeNull(); // a 16-key group would span two blocks
    expect(matrix(128, 4, { storage: { kind: "float", dtype: "f32" } })).toBeNull();
    expect(matrix(128, 4, { storage: { kind: "quantized", bits: 8, groupSize: 64 } })).toBeNull();
  });
});
