/**
 * MLX's memory: the limits set from the configured budget, and the report that adds MLX's allocator
 * figures to the contract's bytes by role.
 */
import type { MemoryReport } from "../contract.js";
import type { NativeMemory } from "./addon.js";

/** The contract's report with MLX's allocator figures always present. */
export type MlxMemoryReport = MemoryReport &
  Required<Pick<MemoryReport, "activeBytes" | "peakBytes" | "cacheBytes" | "limitBytes">>;

export interface MlxMemoryLimits {
  /** MLX's memory limit: evaluation waits for buffers to free before going past it. */
  memoryBytes?: number;
  /** Freed buffers kept for reuse, at most; 0 returns every freed buffer to the system. */
  cacheBytes?: number;
}

/**
 * Limits for a process whose MLX memory should stay within `budgetBytes` (weights, KV cache and
 * activations together): the whole budget as the memory limit, and a buffer cache of a tenth of it
 * (at most 2 GiB), which keeps decode steps from reallocating without holding memory hostage.
 */
export function memoryLimitsFromBudget(budgetBytes: number): Required<MlxMemoryLimits> {
  if (!(budgetBytes > 0) || !Number.isFinite(budgetBytes)) {
    throw new Error(`mlx: the memory budget must be a positive number of bytes, got ${budgetBytes}`);
  }
  return { memoryBytes: Math.floor(budgetBytes), cacheBytes: Math.floor(Math.min(budgetBytes / 10, 2 ** 31)) };
}

/** Weights and KV cache as the backend counts them; everything else MLX holds is `otherBytes`. */
export function memoryReport(native: NativeMemory, weightsBytes: number, kvCacheBytes: number): MlxMemoryReport {
  return {
    weightsBytes,
    kvCacheBytes,
    otherBytes: Math.max(0, native.active - weightsBytes - kvCacheBytes),
    activeBytes: native.active,
    peakBytes: native.peak,
    cacheBytes: native.cache,
    limitBytes: native.limit,
  };
}
