/**
 * How kernels/attention.wgsl (the decode kernel) is cut into workgroups, and which rows of a prefill
 * it takes.
 *
 * A workgroup owns a quad of query vectors (rows of one sequence × q heads of one kv head, at most
 * four) and reads each key by LANES threads, 8 values per thread, so the kernel's shape follows
 * headDim alone: LANES = the power of two ≥ headDim / 8, and 128 / LANES keys read side by side.
 */
import type { KvCacheSpec } from "../../contract.js";
import { kernelConstants, type KvLayout } from "./kv-cache.js";
import { largestPowerOfTwoAtMost } from "./attention-prefill.js";

/** Rows per work item the batch prepares lists for (the plan picks one from the head group size). */
export const DECODE_ROWS_CHOICES = [1, 2, 4] as const;

/** Query vectors per workgroup: the kernel holds them as the components of a vec4. */
const QUAD = 4;
const WORKGROUP = 128;

/**
 * The rows past a sequence's whole prefill work items (of `rowsPerItem` rows) that go to the decode
 * kernel instead of a last, mostly empty prefill work item: fewer than half an item. A prefill work
 * item costs about the same however few rows it holds, so a hot follow-up's 65th row (the previous
 * answer's last token) cost a fifth item per kv head: 2406 against 1940 µs for 64 rows at 32K, headDim
 * 128, on an H200; on the decode kernel it costs 2043 (bench/attention.ts, "the 65th row"). Half an
 * item is where the two kernels meet in the few-rows sweep (8 rows of 4 heads: PREFILL_MIN_ROWS).
 */
export function decodeTailRows(queryLength: number, rowsPerItem: number): number {
  const whole = Math.floor(queryLength / rowsPerItem);
  const tail = queryLength - whole * rowsPerItem;
  return whole > 0 && tail > 0 && 2 * tail < rowsPerItem ? tail : 0;
}

export interface DecodePlan {
  headsPerChunk: number;
  headChunks: number;
  rowsPerItem: number;
  /** Pipeline constants besides the cache's own. */
  constants: Record<string, number>;
}

export function planDecode(
  spec: KvCacheSpec,
  layout: KvLayout,
  groupSize: number,
  /** The most rows a sequence hands the decode kernel in this dispatch. */
  maxQueryLength: number,
  /** Smallest subgroup the device may run (0 without subgroups): shuffles need ≥ LANES lanes. */
  subgroupMinSize: number,
): DecodePlan {
  const { headDim } = spec;
  if (headDim % 8 !== 0 || headDim > 8 * WORKGROUP) {
    throw new Error(
      `attention: the decode kernel takes a headDim that is a multiple of 8 up to ${8 * WORKGROUP}, got ${headDim}`,
    );
  }
  const lanes = 2 ** Math.ceil(Math.log2(headDim / 8));
  const headsPerChunk = Math.min(groupSize, QUAD);
  const rowsPerItem = Math.min(
    largestPowerOfTwoAtMost(QUAD / headsPerChunk),
    2 ** Math.ceil(Math.log2(Math.max(1, maxQueryLength))),
  );
  return {
    headsPerChunk,
    headChunks: Math.ceil(groupSize / headsPerChunk),
    rowsPerItem,
    constants: {
      ...kernelConstants(spec, layout),
      LANES: lanes,
      SUBGROUP_SUM: subgroupMinSize >= lanes ? 1 : 0,
    },
  };
}
