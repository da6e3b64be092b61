/**
 * Argument checks every backend's KV store and attention make the same way, with the same words:
 * written once here so the backends cannot drift apart (conformance compares their messages too).
 */
import type { AttentionSequence, KvCacheSpec } from "./contract.js";

export function checkKvLayer(spec: KvCacheSpec, operation: string, layer: number): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= spec.layers) {
    throw new Error(`KV cache ${operation}: layer ${layer} is outside 0…${spec.layers - 1}`);
  }
}

export function checkKvBlock(spec: KvCacheSpec, operation: string, block: number): void {
  if (!Number.isInteger(block) || block < 0 || block >= spec.blockCount) {
    throw new Error(`KV cache ${operation}: block ${block} is outside 0…${spec.blockCount - 1}`);
  }
}

/** importBlocks' arguments: blocks inside the cache, none twice, and exactly their bytes. */
export function checkKvImport(
  spec: KvCacheSpec,
  bytesPerBlock: number,
  blocks: readonly number[],
  bytes: Uint8Array,
): void {
  const seen = new Set<number>();
  for (const block of blocks) {
    checkKvBlock(spec, "importBlocks", block);
    if (seen.has(block)) throw new Error(`KV cache importBlocks: block ${block} is listed twice`);
    seen.add(block);
  }
  if (bytes.byteLength !== blocks.length * bytesPerBlock) {
    throw new Error(
      `KV cache importBlocks: got ${bytes.byteLength} bytes for ${blocks.length} blocks of ${bytesPerBlock} bytes`,
    );
  }
}

/**
 * exportBlocks' arguments: blocks inside the cache, and the caller's array (when given) exactly their
 * size. The array to fill is returned: `into`, or a new one (not zeroed first: every byte is written).
 */
export function checkKvExport(
  spec: KvCacheSpec,
  bytesPerBlock: number,
  blocks: readonly number[],
  into: Uint8Array | undefined,
): Uint8Array {
  for (const block of blocks) checkKvBlock(spec, "exportBlocks", block);
  const size = blocks.length * bytesPerBlock;
  if (into && into.byteLength !== size) {
    throw new Error(
      `KV cache exportBlocks: got ${into.byteLength} bytes to fill for ${blocks.length} blocks of ${bytesPerBlock} bytes`,
    );
  }
  // allocUnsafeSlow: a buffer of its own, not a slice of Node's shared pool, and not zeroed.
  return into ?? new Uint8Array(Buffer.allocUnsafeSlow(size).buffer);
}

/** Every block a sequence's context needs is in its table and inside the cache. */
export function checkBlockTables(sequences: readonly AttentionSequence[], spec: KvCacheSpec): void {
  const { blockSize, blockCount } = spec;
  for (const sequence of sequences) {
    const needed = Math.ceil(sequence.contextLength / blockSize);
    if (sequence.blockTable.length < needed) {
      throw new Error(
        `attention: a sequence of ${sequence.contextLength} tokens needs ${needed} blocks of ${blockSize}, its table has ${sequence.blockTable.length}`,
      );
    }
    const outside = sequence.blockTable.slice(0, needed).find((block) => block >= blockCount);
    if (outside !== undefined)
      throw new Error(`attention: block ${outside} is outside the cache's ${blockCount} blocks`);
  }
}

/** The rows of the sequences must tile [0, total) exactly, as the flattened layout says. */
export function checkQueryRows(sequences: readonly AttentionSequence[]): number {
  for (const sequence of sequences) {
    const { queryStart, queryLength, contextLength, blockTable } = sequence;
    const fields = [queryStart, queryLength, contextLength, ...blockTable];
    if (!fields.every((value) => Number.isInteger(value) && value >= 0 && value < 2 ** 31)) {
      throw new Error(`prepareAttention: sequence fields must be non-negative integers: ${JSON.stringify(sequence)}`);
    }
    if (queryLength > contextLength) {
      throw new Error(`prepareAttention: queryLength ${queryLength} exceeds contextLength ${contextLength}`);
    }
  }
  const sorted = sequences.filter((s) => s.queryLength > 0).sort((a, b) => a.queryStart - b.queryStart);
  let next = 0;
  for (const { queryStart, queryLength } of sorted) {
    if (queryStart !== next) {
      throw new Error(
        `prepareAttention: query rows must be contiguous from 0; a sequence starts at ${queryStart}, expected ${next}`,
      );
    }
    next += queryLength;
  }
  return next;
}
