/**
 * A small, deterministic BPE trainer for the test tokenizers: counts the adjacent symbol pairs of a
 * corpus's words and merges the most frequent pair until the budget of new tokens is spent or nothing
 * is left to merge. Pair counts are updated incrementally and the best pair comes from a lazy max-heap,
 * so learning every merge a few-KB corpus allows takes milliseconds. Ties go to the pair whose key
 * sorts first, so the result depends on nothing but the input.
 *
 * The second half cuts the embedded corpus into words the way each family's tokenizer does (byte-level
 * with the family's split regex; SentencePiece-style for Gemma) and learns their merges.
 */
import { TOKENIZER_CORPUS } from "./tokenizer-corpus.js";

export type Merge = [string, string];

export interface LearnedMerges {
  /** In rank order, as tokenizer.json lists them. */
  merges: Merge[];
  /** The tokens the merges created, in order; a merge whose result already exists creates none. */
  tokens: string[];
  /** createdBy[k] is the index of the merge that created tokens[k]. */
  createdBy: number[];
}

interface HeapEntry {
  count: number;
  key: string;
}

/** Max-heap on count; among equal counts the smaller key wins. */
class PairHeap {
  private readonly entries: HeapEntry[] = [];

  get size(): number {
    return this.entries.length;
  }

  push(entry: HeapEntry): void {
    const entries = this.entries;
    entries.push(entry);
    let index = entries.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!this.before(entries[index]!, entries[parent]!)) break;
      [entries[index], entries[parent]] = [entries[parent]!, entries[index]!];
      index = parent;
    }
  }

  pop(): HeapEntry | undefined {
    const entries = this.entries;
    const top = entries[0];
    const last = entries.pop();
    if (top === undefined || last === undefined || entries.length === 0) return top;
    entries[0] = last;
    let index = 0;
    for (;;) {
      const left = 2 * index + 1;
      const right = left + 1;
      let best = index;
      if (left < entries.length && this.before(entries[left]!, entries[best]!)) best = left;
      if (right < entries.length && this.before(entries[right]!, entries[best]!)) best = right;
      if (best === index) break;
      [entries[index], entries[best]] = [entries[best]!, entries[index]!];
      index = best;
    }
    return top;
  }

  private before(a: HeapEntry, b: HeapEntry): boolean {
    return a.count !== b.count ? a.count > b.count : a.key < b.key;
  }
}

// Symbols never contain U+0000 (byte-level maps byte 0 to "Ā"; the corpus has no NUL), so it can join a pair's key.
const SEPARATOR = "\u0000";
const pairKey = (left: string, right: string) => left + SEPARATOR + right;

/**
 * Learns merges over `words` (each already split into its initial symbols, with how often it occurs),
 * creating at most `maxNewTokens` tokens that are not in `existing`.
 */
export function learnMerges(
  words: ReadonlyMap<string, { symbols: string[]; count: number }>,
  existing: ReadonlySet<string>,
  maxNewTokens: number,
): LearnedMerges {
  const symbolsOf: string[][] = [];
  const countOf: number[] = [];
  for (const { symbols, count } of words.values()) {
    symbolsOf.push(symbols.slice());
    countOf.push(count);
  }
  const pairCounts = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const heap = new PairHeap();
  const changed = new Set<string>();

  const addPairs = (word: number, sign: 1 | -1) => {
    const symbols = symbolsOf[word]!;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = pairKey(symbols[i]!, symbols[i + 1]!);
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + sign * countOf[word]!);
      changed.add(key);
      if (sign > 0) {
        let where = pairWords.get(key);
        if (!where) pairWords.set(key, (where = new Set()));
        where.add(word);
      }
    }
  };
  const publishChanges = () => {
    for (const key of changed) {
      const count = pairCounts.get(key)!;
      if (count > 0) heap.push({ count, key });
    }
    changed.clear();
  };

  for (let word = 0; word < symbolsOf.length; word++) addPairs(word, 1);
  publishChanges();

  const vocabulary = new Set(existing);
  const merges: Merge[] = [];
  const tokens: string[] = [];
  const createdBy: number[] = [];
  while (tokens.length < maxNewTokens && heap.size > 0) {
    const best = heap.pop()!;
    if (pairCounts.get(best.key) !== best.count) continue; // a stale entry: the pair's count changed since
    const [left, right] = best.key.split(SEPARATOR) as [string, string];
    const merged = left + right;
    merges.push([left, right]);
    if (!vocabulary.has(merged)) {
      vocabulary.add(merged);
      tokens.push(merged);
      createdBy.push(merges.length - 1);
    }
    for (const word of pairWords.get(best.key)!) {
      const symbols = symbolsOf[word]!;
      addPairs(word, -1);
      const next: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
          next.push(merged);
          i++;
        } else {
          next.push(symbols[i]!);
        }
      }
      symbolsOf[word] = next;
      addPairs(word, 1);
    }
    pairWords.delete(best.key);
    publishChanges();
  }
  return { merges, tokens, createdBy };
}

/** Counts words and turns each into its initial symbols. */
function countWords(
  pieces: Iterable<string>,
  toSymbols: (piece: string) => string[],
): Map<string, { symbols: string[]; count: number }> {
  const words = new Map<string, { symbols: string[]; count: number }>();
  for (const piece of pieces) {
    const entry = words.get(piece);
    if (entry) entry.count++;
    else words.set(piece, { symbols: toSymbols(piece), count: 1 });
  }
  return words;
}

// ---- What the families learn from the corpus ----

/** The Llama 3 / Qwen2 split patterns in JavaScript syntax, used only to cut the corpus into words. */
function trainingSplitter(digits: "{1,3}" | ""): RegExp {
  const contraction = "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])";
  return new RegExp(
    `${contraction}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}${digits}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
    "gu",
  );
}

const isPrintableLatin1 = (b: number) =>
  (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);

/**
 * GPT-2's reversible byte → printable character map: printable Latin-1 bytes stand for themselves, the
 * others (control characters, space, ...) for U+0100 onwards in byte order.
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  let next = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(isPrintableLatin1(b) ? b : 256 + next++));
})();

/** The 256 byte tokens in GPT-2's order — printable bytes first — which is also the order of their ids. */
export function byteLevelAlphabet(): string[] {
  const bytes = Array.from({ length: 256 }, (_, b) => b);
  const order = [...bytes.filter(isPrintableLatin1), ...bytes.filter((b) => !isPrintableLatin1(b))];
  return order.map((b) => BYTE_TO_CHAR[b]!);
}

const utf8 = new TextEncoder();
const toByteLevel = (text: string) => Array.from(utf8.encode(text), (b) => BYTE_TO_CHAR[b]!);

// Learning does not depend on the vocabulary size, so each family's corpus split is learned once, to
// exhaustion, and each size takes a prefix of its merges.
const learned = new Map<string, LearnedMerges>();

function cached(key: string, learn: () => LearnedMerges): LearnedMerges {
  let result = learned.get(key);
  if (!result) learned.set(key, (result = learn()));
  return result;
}

/** Byte-level merges; Llama 3 groups up to three digits ("{1,3}"), Qwen2 keeps digits single (""). */
export function byteLevelMerges(digits: "{1,3}" | ""): LearnedMerges {
  return cached(`byte-level ${digits}`, () => {
    const words = countWords(TOKENIZER_CORPUS.match(trainingSplitter(digits)) ?? [], toByteLevel);
    return learnMerges(words, new Set(byteLevelAlphabet()), Number.MAX_SAFE_INTEGER);
  });
}

/** The merges learned before the (count+1)-th new token: those that create the first `count` tokens. */
export function takeMerges(all: LearnedMerges, count: number): { merges: Merge[]; tokens: string[] } {
  const end = count < all.tokens.length ? all.createdBy[count]! : all.merges.length;
  return { merges: all.merges.slice(0, end), tokens: all.tokens.slice(0, count) };
}

export const SPACE = "\u2581"; // "▁", SentencePiece's visible space

/** Corpus words as SentencePiece cuts them: a "▁" starts a word, digits stand alone, newlines group. */
const SENTENCEPIECE_WORDS = new RegExp(`${SPACE}?[^${SPACE}\\n\\p{Nd}]+|${SPACE}+|\\n+|\\p{Nd}`, "gu");

/** Characters seen at least twice become pieces, most frequent first; rarer ones fall back to bytes. */
export function sentencePieceCharacters(): string[] {
  const counts = new Map<string, number>();
  for (const char of TOKENIZER_CORPUS.replaceAll(" ", SPACE)) counts.set(char, (counts.get(char) ?? 0) + 1);
  return [...counts]
    .filter(([, count]) => count >= 2)
    .sort(([a, countA], [b, countB]) => countB - countA || (a < b ? -1 : 1))
    .map(([char]) => char);
}

/** SentencePiece-style merges over `alphabet` (the characters that have pieces). */
export function sentencePieceMerges(alphabet: ReadonlySet<string>): LearnedMerges {
  return cached("sentencepiece", () => {
    const normalized = TOKENIZER_CORPUS.replaceAll(" ", SPACE);
    // Characters outside the alphabet are left to byte fallback, so merges never span them.
    const pieces = (normalized.match(SENTENCEPIECE_WORDS) ?? []).flatMap((word) => splitAtUnknown(word, alphabet));
    const words = countWords(pieces, (piece) => [...piece]);
    return learnMerges(words, alphabet, Number.MAX_SAFE_INTEGER);
  });
}

function splitAtUnknown(word: string, alphabet: ReadonlySet<string>): string[] {
  const parts: string[] = [];
  let current = "";
  for (const char of word) {
    if (alphabet.has(char)) {
      current += char;
    } else if (current) {
      parts.push(current);
      current = "";
    }
  }
  if (current) parts.push(current);
  return parts;
}
