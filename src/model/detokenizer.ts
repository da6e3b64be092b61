/**
 * Streaming detokenization: token ids in one at a time, text deltas out, such that the deltas joined
 * (after flush) equal `tokenizer.decode(allIds)` for any id sequence — and no delta ever ends in half
 * a character. What is held back and why:
 *
 *  - byte-level vocabularies: the bytes of a character split across tokens; TextDecoder's streaming
 *    mode holds an incomplete sequence and replaces invalid bytes exactly as one-shot decoding does.
 *  - byte fallback (<0xNN> tokens): the whole run, because the reference decodes a run all at once
 *    and turns every byte of it into U+FFFD when any part is invalid — a run that looks complete can
 *    still be spoiled by the next byte token.
 *
 * Leading-space rules (Strip, Metaspace) apply to the start of the stream, as to the start of a decode.
 */
import type { ModelTokenizer } from "./tokenizer.js";
import { decodeFallbackRun, stripLeadingSpaces } from "./token-decoding.js";

export interface DetokenizerOptions {
  /** Leave out the text of special tokens (BOS, EOS, end-of-turn markers ...). Default false. */
  skipSpecialTokens?: boolean;
}

export class StreamingDetokenizer {
  private readonly skipSpecialTokens: boolean;
  private utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
  private fallbackRun: number[] = [];
  private tokensSeen = 0;
  private leadingSpacesToStrip: number;

  constructor(
    private readonly tokenizer: ModelTokenizer,
    options: DetokenizerOptions = {},
  ) {
    this.skipSpecialTokens = options.skipSpecialTokens ?? false;
    const rule = tokenizer.decoding.leadingSpace;
    this.leadingSpacesToStrip = rule.kind === "strip-text" ? rule.count : 0;
  }

  /** Adds one token; returns the text it completes (often "", never a broken character). */
  push(id: number): string {
    const { decoding, specialTokenIds } = this.tokenizer;
    if (this.tokenizer.idToToken(id) === undefined) return "";
    if (this.skipSpecialTokens && specialTokenIds.has(id)) return "";
    const first = this.tokensSeen++ === 0;
    if (decoding.kind === "byte-level") return this.utf8.decode(decoding.bytes(id), { stream: true });

    const byte = decoding.fallbackByte(id);
    if (byte >= 0) {
      this.fallbackRun.push(byte);
      return "";
    }
    return this.emit(this.takeFallbackRun() + decoding.text(id, first)!);
  }

  /** Adds several tokens; returns the text they complete. */
  pushAll(ids: Iterable<number>): string {
    let text = "";
    for (const id of ids) text += this.push(id);
    return text;
  }

  /** Ends the stream: returns whatever was held back, decoded as the end of the text. */
  flush(): string {
    if (this.tokenizer.decoding.kind === "byte-level") {
      const rest = this.utf8.decode();
      this.utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
      this.tokensSeen = 0;
      return rest;
    }
    const rest = this.emit(this.takeFallbackRun());
    this.tokensSeen = 0;
    const rule = this.tokenizer.decoding.leadingSpace;
    this.leadingSpacesToStrip = rule.kind === "strip-text" ? rule.count : 0;
    return rest;
  }

  private takeFallbackRun(): string {
    if (this.fallbackRun.length === 0) return "";
    const text = decodeFallbackRun(this.fallbackRun);
    this.fallbackRun = [];
    return text;
  }

  private emit(text: string): string {
    if (this.leadingSpacesToStrip === 0) return text;
    const stripped = stripLeadingSpaces(text, this.leadingSpacesToStrip);
    this.leadingSpacesToStrip = stripped.remaining;
    return stripped.text;
  }
}
