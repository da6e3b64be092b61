/** Paged KV-cache storage and attention over it (kernels/kv_cache.wgsl, attention.wgsl). */
import type {
  AttentionOptions,
  AttentionSequence,
  KvCache,
  KvCacheSpec,
  OpName,
  PreparedAttentionBatch,
} from "../../contract.js";
import type { GpuRuntime, GpuTensor } from "../runtime.js";
import { unimplemented } from "./unimplemented.js";

export const IMPLEMENTED_OPS: OpName[] = [];

export function createKvCache(_runtime: GpuRuntime, _spec: KvCacheSpec): KvCache {
  return unimplemented("kv_cache_float");
}

export function prepareAttention(
  _runtime: GpuRuntime,
  _sequences: readonly AttentionSequence[],
): PreparedAttentionBatch {
  return unimplemented("attention");
}

export function attention(
  _runtime: GpuRuntime,
  _q: GpuTensor,
  _cache: KvCache,
  _layer: number,
  _batch: PreparedAttentionBatch,
  _options: AttentionOptions,
): GpuTensor {
  return unimplemented("attention");
}
