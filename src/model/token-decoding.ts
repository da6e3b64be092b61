/**
 * What each token id stands for when text comes back out, read from tokenizer.json's `decoder`, with
 * the semantics of the Rust `tokenizers` library (the reference transformers and mlx-lm decode with):
 *
 *  - ByteLevel (Llama 3, Qwen, SmolLM): every token is a run of bytes — its characters mapped back
 *    through GPT-2's byte↔unicode table, or the token's own UTF-8 when a character is not in the table
 *    (added tokens like "<|im_end|>" are plain ASCII and map to themselves). All bytes are joined and
 *    decoded once, invalid sequences becoming U+FFFD per maximal subpart (as TextDecoder does).
 *  - Sequence of Replace / ByteFallback / Fuse / Strip (Gemma, Llama 2 style): each token's text has
 *    "▁" replaced by " "; a run of <0xNN> tokens is decoded as UTF-8 all at once, and if the run is not
 *    valid UTF-8 every byte in it becomes one U+FFFD; Strip removes leading spaces of the whole text.
 *  - Metaspace: "▁" becomes " ", except in the first token, where every "▁" is dropped.
 *
 * Anything else is refused when the tokenizer loads, so a model never streams text decoded differently
 * from its reference.
 */

export type LeadingSpaceRule =
  /** Strip removes up to `count` leading spaces from the decoded text as a whole. */
  | { kind: "strip-text"; count: number }
  /** Metaspace drops every "▁" of the first token instead of turning it into a space. */
  | { kind: "first-token-drops"; replacement: string }
  | { kind: "none" };

export interface TokenDecoding {
  kind: "byte-level" | "pieces";
  leadingSpace: LeadingSpaceRule;
  /** For "pieces": the byte of a <0xNN> token, or -1. */
  fallbackByte(id: number): number;
  /**
   * For "pieces": a token's text after the decoder's replacements (as the first token of the output when
   * `first`); undefined for ids with no token.
   */
  text(id: number, first?: boolean): string | undefined;
  /** The raw bytes a token stands for (without leading-space rules); empty for ids with no token. */
  bytes(id: number): Uint8Array;
}

export class TokenizerConfigError extends Error {
  override name = "TokenizerConfigError";
}

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);
const REPLACEMENT = "\uFFFD";

/** GPT-2's printable character → byte table (the inverse of the map byte-level vocabularies are written in). */
const CHAR_TO_BYTE: ReadonlyMap<string, number> = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<string, number>();
  let next = 0;
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable(b) ? b : 256 + next++), b);
  return map;
})();

function byteLevelBytes(token: string): Uint8Array {
  const bytes: number[] = [];
  for (const char of token) {
    const byte = CHAR_TO_BYTE.get(char);
    if (byte === undefined) return utf8.encode(token);
    bytes.push(byte);
  }
  return Uint8Array.from(bytes);
}

/** The byte a "<0xNN>" token stands for, as the Rust ByteFallback decoder recognizes it; -1 otherwise. */
function parseFallbackByte(token: string): number {
  if (token.length !== 6 || !token.startsWith("<0x") || !token.endsWith(">")) return -1;
  const hex = token.slice(3, 5);
  return /^[0-9a-fA-F]{2}$/.test(hex) ? parseInt(hex, 16) : -1;
}

interface PieceRules {
  replacements: Array<[string, string]>;
  byteFallback: boolean;
  leadingSpace: LeadingSpaceRule;
}

function describe(decoder: unknown): string {
  return JSON.stringify(decoder).slice(0, 200);
}

/** Reads tokenizer.json's `decoder` into the rules above, or refuses it naming what is supported. */
function readDecoder(decoder: unknown, file: string): "byte-level" | PieceRules {
  const unsupported = () =>
    new TokenizerConfigError(
      `${file}: decoder ${describe(decoder)} is not supported (supported: ByteLevel, Metaspace, or a Sequence of Replace, ByteFallback, Fuse and a final Strip)`,
    );
  if (decoder === null || typeof decoder !== "object") throw unsupported();
  const config = decoder as Record<string, unknown>;
  if (config.type === "ByteLevel") return "byte-level";
  if (config.type === "Metaspace") {
    const replacement = typeof config.replacement === "string" ? config.replacement : "\u2581";
    // Older files say add_prefix_space; newer ones prepend_scheme ("always" | "first" | "never").
    const strips =
      config.prepend_scheme !== undefined ? config.prepend_scheme !== "never" : config.add_prefix_space !== false;
    return {
      replacements: [[replacement, " "]],
      byteFallback: false,
      leadingSpace: strips ? { kind: "first-token-drops", replacement } : { kind: "none" },
    };
  }
  if (config.type !== "Sequence" || !Array.isArray(config.decoders)) throw unsupported();
  const rules: PieceRules = { replacements: [], byteFallback: false, leadingSpace: { kind: "none" } };
  let fused = false;
  for (const step of config.decoders as Array<Record<string, unknown>>) {
    const pattern = step.pattern as { String?: unknown } | undefined;
    if (step.type === "Replace" && !rules.byteFallback && !fused && typeof pattern?.String === "string") {
      rules.replacements.push([pattern.String, typeof step.content === "string" ? step.content : ""]);
    } else if (step.type === "ByteFallback" && !fused) {
      rules.byteFallback = true;
    } else if (step.type === "Fuse") {
      fused = true;
    } else if (step.type === "Strip" && fused && (step.content ?? " ") === " " && !step.stop) {
      rules.leadingSpace = { kind: "strip-text", count: typeof step.start === "number" ? step.start : 0 };
    } else {
      throw unsupported();
    }
  }
  return rules;
}

/** id → token string, for the ids the tokenizer defines. */
export function buildTokenDecoding(tokens: ReadonlyArray<string | undefined>, decoder: unknown, file: string) {
  const rules = readDecoder(decoder, file);
  const byteCache = new Map<number, Uint8Array>();
  if (rules === "byte-level") {
    const decoding: TokenDecoding = {
      kind: "byte-level",
      leadingSpace: { kind: "none" },
      fallbackByte: () => -1,
      text: (id) => tokens[id],
      bytes(id) {
        const token = tokens[id];
        if (token === undefined) return EMPTY;
        let bytes = byteCache.get(id);
        if (!bytes) byteCache.set(id, (bytes = byteLevelBytes(token)));
        return bytes;
      },
    };
    return decoding;
  }
  const replaced = (token: string) => rules.replacements.reduce((text, [from, to]) => text.replaceAll(from, to), token);
  const fallbackByte = (id: number) => {
    const token = tokens[id];
    return rules.byteFallback && token !== undefined ? parseFallbackByte(token) : -1;
  };
  const decoding: TokenDecoding = {
    kind: "pieces",
    leadingSpace: rules.leadingSpace,
    fallbackByte,
    text: (id, first = false) => {
      const token = tokens[id];
      if (token === undefined) return undefined;
      const rule = rules.leadingSpace;
      return first && rule.kind === "first-token-drops"
        ? replaced(token.replaceAll(rule.replacement, ""))
        : replaced(token);
    },
    bytes(id) {
      const token = tokens[id];
      if (token === undefined) return EMPTY;
      let bytes = byteCache.get(id);
      if (!bytes) {
        const byte = fallbackByte(id);
        byteCache.set(id, (bytes = byte >= 0 ? Uint8Array.of(byte) : utf8.encode(replaced(token))));
      }
      return bytes;
    },
  };
  return decoding;
}

/** A run of byte-fallback tokens as the Rust ByteFallback decoder turns it into text: all or nothing. */
export function decodeFallbackRun(bytes: readonly number[]): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(Uint8Array.from(bytes));
  } catch {
    return REPLACEMENT.repeat(bytes.length);
  }
}

/** Removes up to `count` leading spaces; returns the text and how many are still to be removed. */
export function stripLeadingSpaces(text: string, count: number): { text: string; remaining: number } {
  let cut = 0;
  while (cut < count && cut < text.length && text[cut] === " ") cut++;
  // Once a non-space character has been seen, nothing more is stripped.
  const remaining = cut === text.length ? count - cut : 0;
  return { text: text.slice(cut), remaining };
}
