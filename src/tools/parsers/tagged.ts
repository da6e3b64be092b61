/**
 * `<tool_call>` BODY `</tool_call>`, the wrapper Hermes, Qwen2.5/Qwen3 and Qwen3-Coder share; the
 * body reader decides what goes inside. Whitespace may separate the body from the closing tag.
 */
import { isSpace, LiteralMatcher } from "./json-scanner.js";
import type { CallReader, DraftCall, ReadStep } from "./types.js";

export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";

export interface CallBodyReader {
  /** Reads the body; "done" with its last unit. */
  feed(unit: string): ReadStep;
  readonly draft: DraftCall;
  closeArguments(): string;
}

export class TaggedCallReader implements CallReader {
  private stage: "open" | "body" | "close" = "open";
  private readonly openTag = new LiteralMatcher(TOOL_CALL_OPEN);
  private readonly closeTag = new LiteralMatcher(TOOL_CALL_CLOSE);
  readonly drafts: readonly DraftCall[];

  constructor(private readonly body: CallBodyReader) {
    this.drafts = [body.draft];
  }

  feed(unit: string): ReadStep {
    switch (this.stage) {
      case "open": {
        const step = this.openTag.feed(unit);
        if (step !== "done") return step;
        this.stage = "body";
        return "more";
      }
      case "body": {
        const step = this.body.feed(unit);
        if (step !== "done") return step;
        this.stage = "close";
        return "more";
      }
      case "close":
        if (isSpace(unit) && !this.closeTag.started) return "more";
        return this.closeTag.feed(unit);
    }
  }

  /** A whole body whose closing tag is missing (or cut short) still counts as a call. */
  completeAtEnd(): boolean {
    return this.stage === "close";
  }

  closeArguments(): string {
    return this.body.closeArguments();
  }
}

export function startsTag(unit: string): boolean {
  return unit === "<";
}
