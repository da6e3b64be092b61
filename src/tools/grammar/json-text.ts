/**
 * JSON's lexical pieces as byte-level NFA fragments: strings (escapes, UTF-8 checked byte by byte so a
 * token may end inside a character, optional length bounds in code points as JSON Schema counts them),
 * numbers and integers with a bounded number of digits, and the one serialization style the grammar
 * emits: `{"a": 1, "b": [true, null]}` — a space after `:` and `,`, nowhere else (Python's json.dumps,
 * which is what the families' tool-call examples look like).
 */
import { GrammarError } from "./errors.js";
import type { Fragment, NfaBuilder } from "./nfa.js";

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Digits allowed before the point, after it, and in an exponent: every number stays finite in a double. */
const INTEGER_DIGITS = 16;
const FRACTION_DIGITS = 16;
const EXPONENT_DIGITS = 2;

// States of one character inside a JSON string, byte by byte.
const BOUNDARY = 0;
const ESCAPE = 1;
const HEX_1 = 2; // after \u
const HEX_2 = 3;
const HEX_2_AFTER_D = 4; // \uD…: only D000–D7FF, so no surrogate (a lone one is not Unicode text)
const HEX_3 = 5;
const HEX_4 = 6;
const CONTINUATION_1 = 7; // UTF-8: one continuation byte left
const CONTINUATION_2 = 8;
const CONTINUATION_3 = 9;
const AFTER_E0 = 10; // the lead bytes whose second byte has a narrower range (no overlong forms, no surrogates)
const AFTER_ED = 11;
const AFTER_F0 = 12;
const AFTER_F4 = 13;
const CHARACTER_STATES = 14;
/** A character ended. */
const DONE = -2;
const REFUSED = -1;

const isHex = (byte: number) =>
  (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
const inRange = (byte: number, lo: number, hi: number) => byte >= lo && byte <= hi;

/** The states that take one byte from one range: [lo, hi, next]. */
const ONE_RANGE: Record<number, readonly [number, number, number]> = {
  [HEX_2_AFTER_D]: [0x30, 0x37, HEX_3],
  [CONTINUATION_1]: [0x80, 0xbf, DONE],
  [CONTINUATION_2]: [0x80, 0xbf, CONTINUATION_1],
  [CONTINUATION_3]: [0x80, 0xbf, CONTINUATION_2],
  [AFTER_E0]: [0xa0, 0xbf, CONTINUATION_1],
  [AFTER_ED]: [0x80, 0x9f, CONTINUATION_1],
  [AFTER_F0]: [0x90, 0xbf, CONTINUATION_2],
  [AFTER_F4]: [0x80, 0x8f, CONTINUATION_2],
};
const AFTER_HEX: Record<number, number> = { [HEX_2]: HEX_3, [HEX_3]: HEX_4, [HEX_4]: DONE };

function characterStep(state: number, byte: number, escapes: boolean): number {
  switch (state) {
    case BOUNDARY:
      if (byte < 0x20 || byte === 0x22) return REFUSED; // control characters must be escaped; `"` ends the string
      if (byte === 0x5c) return escapes ? ESCAPE : REFUSED;
      if (byte < 0x80) return DONE;
      if (inRange(byte, 0xc2, 0xdf)) return CONTINUATION_1;
      if (byte === 0xe0) return AFTER_E0;
      if (byte === 0xed) return AFTER_ED;
      if (inRange(byte, 0xe1, 0xef)) return CONTINUATION_2;
      if (byte === 0xf0) return AFTER_F0;
      if (byte === 0xf4) return AFTER_F4;
      if (inRange(byte, 0xf1, 0xf3)) return CONTINUATION_3;
      return REFUSED;
    case ESCAPE:
      if (byte === 0x75) return HEX_1;
      return '"\\/bfnrt'.includes(String.fromCharCode(byte)) ? DONE : REFUSED;
    case HEX_1:
      if (byte === 0x44 || byte === 0x64) return HEX_2_AFTER_D;
      return isHex(byte) ? HEX_2 : REFUSED;
    case HEX_2:
    case HEX_3:
    case HEX_4:
      return isHex(byte) ? AFTER_HEX[state]! : REFUSED;
    default: {
      const [lo, hi, next] = ONE_RANGE[state] ?? [1, 0, REFUSED];
      return inRange(byte, lo, hi) ? next : REFUSED;
    }
  }
}

export interface StringOptions {
  /** In code points, as JSON Schema counts them. */
  minLength: number;
  /** In code points; Infinity for none. Each counted character costs ~14 automaton states. */
  maxLength: number;
  /**
   * Strings that must not come out (object keys already declared). Escapes are then refused, so the
   * raw bytes are the key and comparing them is exact.
   */
  exclude?: readonly string[];
}

/** A byte trie of the excluded strings: node 0 is the root; FREE means "differs from all of them". */
const FREE = -1;
interface ExclusionTrie {
  children: Array<Map<number, number>>;
  terminal: boolean[];
}

function exclusionTrie(words: readonly string[]): ExclusionTrie {
  const trie: ExclusionTrie = { children: [new Map<number, number>()], terminal: [false] };
  for (const word of words) {
    let node = 0;
    for (const byte of utf8(word)) {
      let child = trie.children[node]!.get(byte);
      if (child === undefined) {
        child = trie.children.length;
        trie.children.push(new Map<number, number>());
        trie.terminal.push(false);
        trie.children[node]!.set(byte, child);
      }
      node = child;
    }
    trie.terminal[node] = true;
  }
  return trie;
}

/** The counter after one step: a finished character counts (saturating at minLength when unbounded). */
function nextCount(next: number, count: number, bounds: { minLength: number; maxLength: number }): number {
  if (next !== DONE) return count;
  return bounds.maxLength === Infinity ? Math.min(count + 1, bounds.minLength) : count + 1;
}

/** Edges from `from` for every byte, one per run of bytes with the same target (-1: none). */
function byteEdges(builder: NfaBuilder, from: number, targetOf: (byte: number) => number): void {
  let runStart = -1;
  let runTarget = -1;
  for (let byte = 0; byte <= 256; byte++) {
    const target = byte < 256 ? targetOf(byte) : -1;
    if (target !== runTarget) {
      if (runTarget >= 0) builder.edge(from, runStart, byte - 1, runTarget);
      runStart = byte;
      runTarget = target;
    }
  }
}

/**
 * A quoted JSON string, built as the product of the character automaton, a code-point counter (up
 * to maxLength, or saturating at minLength when unbounded) and, for keys, the exclusion trie.
 */
export function jsonString(builder: NfaBuilder, options: StringOptions): Fragment {
  const { minLength, maxLength } = options;
  const trie = options.exclude ? exclusionTrie(options.exclude) : null;
  const escapes = trie === null;
  const start = builder.state();
  const end = builder.state();
  const ids = new Map<number, number>();
  const queue: Array<[number, number, number]> = [];
  // Keys pack (character state, count, trie node + 1) into one number; counts stay far below 2^20.
  const key = (character: number, count: number, node: number) =>
    (node + 1) * CHARACTER_STATES * 0x100000 + count * CHARACTER_STATES + character;
  const stateOf = (character: number, count: number, node: number) => {
    const packed = key(character, count, node);
    let id = ids.get(packed);
    if (id === undefined) {
      id = builder.state();
      ids.set(packed, id);
      queue.push([character, count, node]);
    }
    return id;
  };
  const opened = stateOf(BOUNDARY, 0, trie ? 0 : FREE);
  builder.edge(start, 0x22, 0x22, opened);
  for (let head = 0; head < queue.length; head++) {
    const [character, count, node] = queue[head]!;
    const from = ids.get(key(character, count, node))!;
    if (character === BOUNDARY && count >= minLength && (node === FREE || (node !== 0 && !trie!.terminal[node]))) {
      builder.edge(from, 0x22, 0x22, end);
    }
    if (character === BOUNDARY && count >= maxLength) continue;
    byteEdges(builder, from, (byte) => {
      const next = characterStep(character, byte, escapes);
      if (next === REFUSED) return -1;
      const nextNode = node === FREE ? FREE : (trie!.children[node]!.get(byte) ?? FREE);
      return stateOf(next === DONE ? BOUNDARY : next, nextCount(next, count, options), nextNode);
    });
  }
  return { start, end };
}

export interface TextOptions {
  /** ASCII characters the text must not contain (a `<` that would open the closing tag, say). */
  exclude: string;
  /** In code points. */
  minLength: number;
  /** In code points; Infinity for none. */
  maxLength: number;
}

/** One step of a raw text character: any Unicode scalar value in UTF-8 but the excluded ASCII bytes. */
function textCharacterStep(state: number, byte: number, excluded: ReadonlySet<number>): number {
  if (state === BOUNDARY && byte < 0x80) return excluded.has(byte) ? REFUSED : DONE;
  return characterStep(state, byte, false);
}

/**
 * Raw UTF-8 text, unquoted and unescaped, without the excluded characters: the product of the
 * character automaton (the same UTF-8 checks as inside JSON strings) and a code-point counter.
 */
export function rawText(builder: NfaBuilder, options: TextOptions): Fragment {
  const { minLength, maxLength } = options;
  const excluded = new Set<number>();
  for (const character of options.exclude) {
    const code = character.codePointAt(0)!;
    if (code >= 0x80)
      throw new GrammarError(`text can only exclude ASCII characters, not ${JSON.stringify(character)}`);
    excluded.add(code);
  }
  const start = builder.state();
  const end = builder.state();
  const ids = new Map<number, number>();
  const queue: Array<[number, number]> = [];
  const stateOf = (character: number, count: number) => {
    const packed = count * CHARACTER_STATES + character;
    let id = ids.get(packed);
    if (id === undefined) {
      id = builder.state();
      ids.set(packed, id);
      queue.push([character, count]);
    }
    return id;
  };
  builder.epsilon(start, stateOf(BOUNDARY, 0));
  for (let head = 0; head < queue.length; head++) {
    const [character, count] = queue[head]!;
    const from = ids.get(count * CHARACTER_STATES + character)!;
    if (character === BOUNDARY && count >= minLength) builder.epsilon(from, end);
    if (character === BOUNDARY && count >= maxLength) continue;
    byteEdges(builder, from, (byte) => {
      const next = textCharacterStep(character, byte, excluded);
      if (next === REFUSED) return -1;
      return stateOf(next === DONE ? BOUNDARY : next, nextCount(next, count, options));
    });
  }
  return { start, end };
}

/** `make()` repeated between min and max times (max may be Infinity: a loop after the min copies). */
export function repeat(builder: NfaBuilder, make: () => Fragment, min: number, max: number): Fragment {
  const start = builder.state();
  const end = builder.state();
  let at = start;
  const copies = max === Infinity ? min : max;
  for (let index = 0; index < copies; index++) {
    if (index >= min) builder.epsilon(at, end);
    const part = make();
    builder.epsilon(at, part.start);
    at = part.end;
  }
  if (max === Infinity) {
    const loop = make();
    builder.epsilon(at, loop.start);
    builder.epsilon(loop.end, at);
  }
  builder.epsilon(at, end);
  return { start, end };
}

function digit(builder: NfaBuilder, lo = 0x30, hi = 0x39): Fragment {
  const start = builder.state();
  const end = builder.state();
  builder.edge(start, lo, hi, end);
  return { start, end };
}

/** `-?(0|[1-9][0-9]{0,15})` */
export function jsonInteger(builder: NfaBuilder): Fragment {
  const nonZero = builder.sequence([
    digit(builder, 0x31, 0x39),
    repeat(builder, () => digit(builder), 0, INTEGER_DIGITS - 1),
  ]);
  return builder.sequence([
    builder.optional(builder.literal([0x2d])),
    builder.union([builder.literal([0x30]), nonZero]),
  ]);
}

/** JSON number syntax with bounded digits (so the value is a finite double). */
export function jsonNumber(builder: NfaBuilder): Fragment {
  const fraction = builder.sequence([
    builder.literal([0x2e]),
    repeat(builder, () => digit(builder), 1, FRACTION_DIGITS),
  ]);
  const exponentMark = builder.union([builder.literal([0x65]), builder.literal([0x45])]);
  const sign = builder.optional(builder.union([builder.literal([0x2b]), builder.literal([0x2d])]));
  const exponent = builder.sequence([exponentMark, sign, repeat(builder, () => digit(builder), 1, EXPONENT_DIGITS)]);
  return builder.sequence([jsonInteger(builder), builder.optional(fraction), builder.optional(exponent)]);
}

/** A JSON value in the grammar's style (`, ` and `: `), for enum and const values. */
export function serializeJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(serializeJson).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    const members = Object.entries(value).map(([name, item]) => `${JSON.stringify(name)}: ${serializeJson(item)}`);
    return `{${members.join(", ")}}`;
  }
  return JSON.stringify(value);
}
