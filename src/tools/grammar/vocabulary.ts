/**
 * A tokenizer's vocabulary as a byte trie, built once per tokenizer: tokens sorted by their bytes, one
 * node per distinct prefix, laid out in depth-first order with each node's depth and the index just
 * past its subtree. A mask walks this array once against the grammar's DFA, reading each shared
 * prefix once and skipping a whole subtree as soon as its prefix is refused.
 */

export interface TokenTrie {
  /** The byte on the edge into each node (node 0 is the root and has none). */
  readonly byte: Uint8Array;
  /** Bytes from the root to each node. */
  readonly depth: Int32Array;
  /** The index just past each node's subtree. */
  readonly next: Int32Array;
  /** tokens[tokenStart[i] .. tokenStart[i + 1]]: the ids whose bytes end at node i. */
  readonly tokenStart: Int32Array;
  readonly tokens: Int32Array;
  /** The longest token, in bytes. */
  readonly maxDepth: number;
}

/** The parts of ModelTokenizer the vocabulary reads. */
export interface TokenizerLike {
  readonly vocabSize: number;
  readonly specialTokenIds: ReadonlySet<number>;
  tokenBytes(id: number): Uint8Array;
}

export class TokenVocabulary {
  private constructor(
    /** Ids covered by masks: bit i of word i >> 5 for i < size. */
    readonly size: number,
    private readonly offsets: Int32Array,
    private readonly data: Uint8Array,
    readonly trie: TokenTrie,
  ) {}

  /**
   * `tokenBytes(id)` gives the bytes a token stands for, or null (or an empty array) for an id the
   * grammar must never produce: ids with no token, and control tokens that would not show in the text.
   * `vocabSize` may exceed the tokenizer's ids (a model's embedding rows often do); the rest are never allowed.
   */
  static build(tokenBytes: (id: number) => Uint8Array | null, vocabSize: number): TokenVocabulary {
    const all: Array<Uint8Array | null> = [];
    let total = 0;
    for (let id = 0; id < vocabSize; id++) {
      const bytes = tokenBytes(id);
      const kept = bytes && bytes.length > 0 ? bytes : null;
      all.push(kept);
      total += kept?.length ?? 0;
    }
    const offsets = new Int32Array(vocabSize + 1);
    const data = new Uint8Array(total);
    const lengths = new Int32Array(vocabSize).fill(-1);
    let at = 0;
    for (let id = 0; id < vocabSize; id++) {
      offsets[id] = at;
      const bytes = all[id];
      if (!bytes) continue;
      data.set(bytes, at);
      lengths[id] = bytes.length;
      at += bytes.length;
    }
    offsets[vocabSize] = at;
    return new TokenVocabulary(vocabSize, offsets, data, buildTrie(offsets, data, lengths));
  }

  /** Every token with bytes, except those the tokenizer marks special (decoding leaves them out of the text). */
  static fromTokenizer(tokenizer: TokenizerLike, vocabSize = tokenizer.vocabSize): TokenVocabulary {
    return TokenVocabulary.build(
      (id) => (id >= tokenizer.vocabSize || tokenizer.specialTokenIds.has(id) ? null : tokenizer.tokenBytes(id)),
      vocabSize,
    );
  }

  /** The bytes of a token in the vocabulary, or null when it is left out. */
  tokenBytes(id: number): Uint8Array | null {
    if (!Number.isInteger(id) || id < 0 || id >= this.size) return null;
    const start = this.offsets[id]!;
    const end = this.offsets[id + 1]!;
    return end > start ? this.data.subarray(start, end) : null;
  }
}

function buildTrie(offsets: Int32Array, data: Uint8Array, lengths: Int32Array): TokenTrie {
  const ids: number[] = [];
  const keys: string[] = [];
  for (let id = 0; id < lengths.length; id++) {
    if (lengths[id]! < 0) continue;
    ids.push(id);
    // One UTF-16 unit per byte: string order is then byte order, and the engine's sort is fast.
    keys[id] = String.fromCharCode(...data.subarray(offsets[id], offsets[id + 1]));
  }
  ids.sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : a - b));

  const byte: number[] = [0];
  const depth: number[] = [0];
  const next: number[] = [0];
  const tokenStart: number[] = [0];
  const tokens: number[] = [];
  const open: number[] = [0]; // open[d]: the node at depth d on the current path
  let previous = "";
  let maxDepth = 0;
  for (const id of ids) {
    const key = keys[id]!;
    let shared = 0;
    while (shared < key.length && shared < previous.length && key.charCodeAt(shared) === previous.charCodeAt(shared)) {
      shared++;
    }
    // Nodes of the previous path below the shared prefix are complete: their subtrees end here.
    for (let d = previous.length; d > shared; d--) next[open[d]!] = byte.length;
    for (let d = shared + 1; d <= key.length; d++) {
      open[d] = byte.length;
      byte.push(key.charCodeAt(d - 1));
      depth.push(d);
      next.push(0);
      tokenStart.push(tokens.length);
    }
    // Sorted order puts a token's end node last among the nodes made so far (or it repeats the previous bytes).
    tokens.push(id);
    previous = key;
    maxDepth = Math.max(maxDepth, key.length);
  }
  for (let d = previous.length; d >= 0; d--) next[open[d]!] = byte.length;
  tokenStart.push(tokens.length);
  return {
    byte: Uint8Array.from(byte),
    depth: Int32Array.from(depth),
    next: Int32Array.from(next),
    tokenStart: Int32Array.from(tokenStart),
    tokens: Int32Array.from(tokens),
    maxDepth,
  };
}
