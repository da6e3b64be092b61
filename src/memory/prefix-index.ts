/**
 * Content-addressed KV blocks: a full block is named by a hash of every token id from the start of
 * the sequence through the end of that block (a chain: each block's hash covers its predecessor's),
 * so equal names mean equal prefixes and therefore equal K/V. Ten agents with the same system prompt
 * and tools find the same names and hold those blocks once.
 *
 * The chain is seeded with the tenant, so requests under different API keys never share a block —
 * sharing would let one tenant time another's prompts. An entry names a block together with the
 * generation it was handed out in: once the block is reused for other tokens, the entry is stale and
 * ignored. Blocks no sequence holds stay findable until they are handed out again.
 */
import { createHash } from "node:crypto";
import type { PagedKv } from "../../backends/kv-paging.js";

/** The chained hash of each full block of `tokens` (a partial last block has none). */
export function blockHashes(
  tenant: string,
  tokens: readonly number[],
  blockSize: number,
  known: KnownHashes | null = null,
  /** Hash the full blocks of tokens[0, length) only (a prompt's last token never lies in a reused block). */
  length = tokens.length,
): string[] {
  // The chain up to a block depends only on the tokens up to it: hashes of a sequence with the same
  // leading tokens are reused as they are, and the chain goes on from the last of them.
  length = Math.min(length, tokens.length);
  const reused = known ? Math.min(known.blocks, known.hashes.length, Math.floor(length / blockSize)) : 0;
  const hashes: string[] = known ? known.hashes.slice(0, reused) : [];
  let previous =
    reused > 0
      ? Buffer.from(hashes[reused - 1]!, "hex")
      : createHash("sha256").update(`agent-memory blocks\0${tenant}`).digest();
  const words = new Uint32Array(blockSize);
  for (let start = reused * blockSize; start + blockSize <= length; start += blockSize) {
    for (let i = 0; i < blockSize; i++) words[i] = tokens[start + i]!;
    previous = createHash("sha256").update(previous).update(new Uint8Array(words.buffer)).digest();
    hashes.push(previous.toString("hex"));
  }
  return hashes;
}

/** Hashes already computed for a sequence whose first `blocks` full blocks hold the same tokens. */
export interface KnownHashes {
  hashes: readonly string[];
  blocks: number;
}

interface Entry {
  block: number;
  generation: number;
}

export class SharedBlockIndex {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly paging: PagedKv) {}

  /** Name the full blocks of a sequence (`blocks[i]` holds the tokens `hashes[i]` covers). */
  register(hashes: readonly string[], blocks: readonly number[]): void {
    for (let i = 0; i < hashes.length && i < blocks.length; i++) {
      const block = blocks[i]!;
      this.entries.set(hashes[i]!, { block, generation: this.paging.generation(block) });
    }
  }

  /** The blocks of the longest run of leading hashes that still name live contents. */
  lookup(hashes: readonly string[]): number[] {
    const blocks: number[] = [];
    for (const hash of hashes) {
      const entry = this.entries.get(hash);
      if (!entry || this.paging.generation(entry.block) !== entry.generation) {
        if (entry) this.entries.delete(hash);
        break;
      }
      blocks.push(entry.block);
    }
    return blocks;
  }

  get size(): number {
    return this.entries.size;
  }
}
