/**
 * A matcher follows one generation through a compiled grammar and answers, before each token, which
 * tokens keep the output a valid prefix. The mask is one walk of the vocabulary trie against the
 * grammar's lazy DFA; masks are cached per DFA state (shared by every matcher of the grammar and
 * vocabulary), so the many steps inside a free string or between the same properties cost a lookup.
 */
import { DEAD, UNKNOWN, type LazyDfa } from "./dfa.js";
import { GrammarError } from "./errors.js";
import type { Nfa } from "./nfa.js";
import type { TokenVocabulary } from "./vocabulary.js";

/** Masks kept per grammar, vocabulary and end-token set (32 KB each at 262K tokens). */
const MASK_CACHE_ENTRIES = 256;

export class CompiledGrammar {
  /** Per vocabulary and end-token set: masks by DFA state, least recently used first. */
  private readonly masks = new WeakMap<
    TokenVocabulary,
    Map<string, { generation: number; masks: Map<number, Uint32Array> }>
  >();

  constructor(
    readonly nfa: Nfa,
    readonly dfa: LazyDfa,
  ) {}

  /** @internal The mask cache of one vocabulary and end-token set (emptied when the DFA is dropped). */
  maskCache(vocabulary: TokenVocabulary, endKey: string): Map<number, Uint32Array> {
    let byEnd = this.masks.get(vocabulary);
    if (!byEnd)
      this.masks.set(vocabulary, (byEnd = new Map<string, { generation: number; masks: Map<number, Uint32Array> }>()));
    let entry = byEnd.get(endKey);
    if (!entry || entry.generation !== this.dfa.generation) {
      byEnd.set(endKey, (entry = { generation: this.dfa.generation, masks: new Map<number, Uint32Array>() }));
    }
    return entry.masks;
  }
}

export interface GrammarMatcher {
  /**
   * Bitset over the vocabulary (bit i of word i >> 5): tokens that keep the output a valid prefix.
   * End-of-turn tokens are allowed exactly when the grammar is complete. The array is shared with the
   * matcher's cache: read it, do not modify it.
   */
  mask(): Uint32Array;
  /** Advances past a token; throws GrammarError if the mask does not allow it. */
  accept(tokenId: number): void;
  /** The output so far is a whole sentence of the grammar (or an end-of-turn token was accepted). */
  isComplete(): boolean;
}

/** Sets the bits of the tokens whose bytes the DFA accepts from `start`, walking the trie once. */
function walkTrie(dfa: LazyDfa, vocabulary: TokenVocabulary, start: number, mask: Uint32Array): void {
  const { byte, depth, next, tokenStart, tokens, maxDepth } = vocabulary.trie;
  const states = new Int32Array(maxDepth + 1);
  states[0] = start;
  let transitions = dfa.transitions;
  const nodes = byte.length;
  let node = 1;
  while (node < nodes) {
    const level = depth[node]!;
    const parent = states[level - 1]!;
    let state = transitions[parent * 256 + byte[node]!]!;
    if (state === UNKNOWN) {
      state = dfa.step(parent, byte[node]!);
      transitions = dfa.transitions;
    }
    if (state === DEAD) {
      node = next[node]!;
      continue;
    }
    states[level] = state;
    for (let index = tokenStart[node]!; index < tokenStart[node + 1]!; index++) {
      const id = tokens[index]!;
      mask[id >>> 5]! |= 1 << (id & 31);
    }
    node++;
  }
}

function setEndTokens(mask: Uint32Array, endTokenIds: readonly number[], allowed: boolean): void {
  for (const id of endTokenIds) {
    if (allowed) mask[id >>> 5]! |= 1 << (id & 31);
    else mask[id >>> 5]! &= ~(1 << (id & 31));
  }
}

class Matcher implements GrammarMatcher {
  private states: Int32Array;
  private state: number;
  private generation: number;
  private ended = false;
  private readonly endTokens: ReadonlySet<number>;
  private readonly endKey: string;
  private readonly words: number;

  constructor(
    private readonly grammar: CompiledGrammar,
    private readonly vocabulary: TokenVocabulary,
    private readonly endTokenIds: readonly number[],
    private readonly cacheMasks: boolean,
  ) {
    const dfa = grammar.dfa;
    this.states = grammar.nfa.initial();
    this.state = dfa.intern(this.states);
    this.generation = dfa.generation;
    this.endTokens = new Set(endTokenIds);
    this.endKey = [...this.endTokens].sort((a, b) => a - b).join(",");
    this.words = (vocabulary.size + 31) >>> 5;
  }

  private current(): number {
    const dfa = this.grammar.dfa;
    if (this.generation !== dfa.generation) {
      this.state = dfa.intern(this.states);
      this.generation = dfa.generation;
    }
    return this.state;
  }

  mask(): Uint32Array {
    if (this.ended) return new Uint32Array(this.words);
    const dfa = this.grammar.dfa;
    dfa.collect();
    const state = this.current();
    const cache = this.cacheMasks
      ? this.grammar.maskCache(this.vocabulary, this.endKey)
      : new Map<number, Uint32Array>();
    let mask = cache.get(state);
    if (mask) {
      cache.delete(state); // most recently used goes last
    } else {
      mask = new Uint32Array(this.words);
      walkTrie(dfa, this.vocabulary, state, mask);
      setEndTokens(mask, this.endTokenIds, dfa.isAccepting(state));
      if (cache.size >= MASK_CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    }
    cache.set(state, mask);
    return mask;
  }

  accept(tokenId: number): void {
    if (this.ended) throw new GrammarError(`token ${tokenId} after the end of the grammar`);
    const dfa = this.grammar.dfa;
    let state = this.current();
    if (this.endTokens.has(tokenId)) {
      if (!dfa.isAccepting(state)) throw new GrammarError(`end token ${tokenId} before the grammar is complete`);
      this.ended = true;
      return;
    }
    const bytes = this.vocabulary.tokenBytes(tokenId);
    if (bytes === null) throw new GrammarError(`token ${tokenId} is not in the grammar's vocabulary`);
    for (let index = 0; index < bytes.length && state !== DEAD; index++) state = dfa.step(state, bytes[index]!);
    if (state === DEAD) throw new GrammarError(`token ${tokenId} does not continue the grammar`);
    this.state = state;
    this.states = dfa.setOf(state);
  }

  isComplete(): boolean {
    return this.ended || this.grammar.dfa.isAccepting(this.current());
  }
}

export interface MatcherOptions {
  /** Keep masks per DFA state on the grammar (default true; false: walk the trie at every step, for benchmarks). */
  cacheMasks?: boolean;
}

export function createMatcher(
  grammar: CompiledGrammar,
  vocabulary: TokenVocabulary,
  endTokenIds: readonly number[],
  { cacheMasks = true }: MatcherOptions = {},
): GrammarMatcher {
  return new Matcher(grammar, vocabulary, endTokenIds, cacheMasks);
}

/**
 * The mask computed the slow way, for benchmarks and tests: every token's bytes run through the NFA
 * from the state after `prefix`, with no trie and no DFA.
 */
export function naiveMask(
  grammar: CompiledGrammar,
  vocabulary: TokenVocabulary,
  prefix: Uint8Array,
  endTokenIds: readonly number[],
): Uint32Array {
  const nfa = grammar.nfa;
  const mask = new Uint32Array((vocabulary.size + 31) >>> 5);
  const states = nfa.run(nfa.initial(), prefix);
  if (states.length === 0) return mask;
  const ends = new Set(endTokenIds);
  for (let id = 0; id < vocabulary.size; id++) {
    const bytes = vocabulary.tokenBytes(id);
    if (bytes === null || ends.has(id)) continue;
    if (nfa.run(states, bytes).length > 0) mask[id >>> 5]! |= 1 << (id & 31);
  }
  setEndTokens(mask, endTokenIds, nfa.isFinal(states));
  return mask;
}
