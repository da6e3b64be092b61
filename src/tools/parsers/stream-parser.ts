/**
 * The format-independent half of tool-call parsing: text flows out as soon as it cannot be the start
 * of a call; from a unit that could start one, a format's CallReader takes over and the text is held
 * (like a stop-string matcher holds a possible stop string) until the reader completes or fails.
 *
 * - A failed attempt gives back its first unit as text and reads the rest again, so text that only
 *   looked like markup comes out unchanged, and a real call behind it is still found.
 * - Auto mode (streamArguments false) holds a block until it is whole; then every call in it must have
 *   a known tool's name and object arguments, or the whole block comes out as its original text.
 * - Streaming mode emits a call's start once its name is read (and is a tool's: prose that looks like a
 *   call is still text) and its argument fragments as they are read. If the markup breaks off after a
 *   start went out (cut off at the token limit, or invalid where no grammar held it), the call is
 *   closed: the missing tail of its JSON (closing quotes and brackets, `null` for an owed value) is sent
 *   as a last fragment and the call ends with what was read; what follows is read again as text. A later
 *   call of a Gemma list that names an unknown tool is read again as text from its name on.
 * - At finish, a block that lacks only its closing tag (`</tool_call>`, Gemma's `]`) counts as whole;
 *   any other unfinished attempt is text in auto mode, and in streaming mode a started call is closed
 *   as above (a call whose name was not yet read is text).
 * - Whitespace between text and a call, between calls, and after the last call belongs to the markup
 *   and is dropped (Llama's `;` separators too); whitespace before a failed attempt comes out with it.
 */
import { isSpace } from "./json-scanner.js";
import type {
  CallReader,
  DraftCall,
  FormatRules,
  ToolCallParser,
  ToolCallParserOptions,
  ToolParseEvent,
} from "./types.js";

export class StreamingToolCallParser implements ToolCallParser {
  private readonly toolNames: ReadonlySet<string>;
  private readonly streamArguments: boolean;
  private events: ToolParseEvent[] = [];
  /** Units waiting to be read; a failed attempt puts its tail back in front. */
  private queue = "";
  private position = 0;
  /** Whitespace after text, held until it is known whether a call follows. */
  private heldSpace = "";
  private afterCall = false;
  private callsAllowed = true;
  private reader: CallReader | null = null;
  /** The raw text of the attempt in progress. */
  private attempt = "";
  /** Streaming: drafts of this attempt already ended, and whether the next one has started. */
  private ended = 0;
  private open = false;
  private sentArguments = 0;
  private nextIndex = 0;

  constructor(
    private readonly rules: FormatRules,
    options: ToolCallParserOptions,
  ) {
    this.toolNames = new Set(options.tools.map((tool) => tool.name));
    this.streamArguments = options.streamArguments;
  }

  push(text: string): ToolParseEvent[] {
    this.queue += text;
    this.drain();
    return this.take();
  }

  finish(): ToolParseEvent[] {
    while (this.reader) {
      this.finishAttempt();
      this.drain();
    }
    if (this.heldSpace) this.text(this.heldSpace);
    this.heldSpace = "";
    return this.take();
  }

  private take(): ToolParseEvent[] {
    const events = this.events;
    this.events = [];
    return events;
  }

  private drain(): void {
    while (this.position < this.queue.length) this.read(this.queue[this.position++]!);
    this.queue = "";
    this.position = 0;
  }

  private readAgain(units: string): void {
    this.queue = units + this.queue.slice(this.position);
    this.position = 0;
  }

  private read(unit: string): void {
    if (this.reader) return this.readCall(unit);
    if (this.afterCall && this.rules.isSeparator(unit)) return;
    this.afterCall = false;
    if (this.callsAllowed && this.rules.startsCall(unit)) {
      this.reader = this.rules.newReader();
      this.attempt = "";
      this.ended = 0;
      this.open = false;
      return this.readCall(unit);
    }
    if (isSpace(unit) && this.callsAllowed) {
      this.heldSpace += unit;
      return;
    }
    this.text(this.heldSpace + unit);
    this.heldSpace = "";
    if (this.rules.callsOnlyAtStart) this.callsAllowed = false;
  }

  private readCall(unit: string): void {
    const reader = this.reader!;
    this.attempt += unit;
    const step = reader.feed(unit);
    if (step === "fail") return this.failAttempt();
    if (this.streamArguments && !this.streamDrafts(reader.drafts)) return this.rejectUnknownTool();
    if (step === "done") this.completeAttempt();
  }

  /** Sends what is new in the drafts; false when the next call names a tool that is not one of ours. */
  private streamDrafts(drafts: readonly DraftCall[]): boolean {
    for (let draft = drafts[this.ended]; draft; draft = drafts[this.ended]) {
      if (!this.open) {
        if (draft.name === null) return true;
        if (!this.toolNames.has(draft.name)) return false;
        this.emit({ type: "tool_call_start", index: this.nextIndex, name: draft.name });
        this.open = true;
        this.sentArguments = 0;
      }
      this.sendArguments(draft.args);
      if (!draft.complete) return true;
      this.endCall(draft.args);
    }
    return true;
  }

  private rejectUnknownTool(): void {
    if (this.ended === 0) return this.failAttempt();
    const start = this.reader!.drafts[this.ended]!.start ?? this.attempt.length;
    this.reader = null;
    this.heldSpace = "";
    this.afterCall = true;
    this.callsAllowed = true;
    this.readAgain(this.attempt.slice(start));
  }

  private sendArguments(args: string): void {
    if (args.length > this.sentArguments) {
      this.emit({ type: "tool_call_arguments", index: this.nextIndex, fragment: args.slice(this.sentArguments) });
    }
    this.sentArguments = args.length;
  }

  private endCall(args: string): void {
    this.emit({ type: "tool_call_end", index: this.nextIndex, arguments: parseArguments(args) ?? {} });
    this.nextIndex += 1;
    this.ended += 1;
    this.open = false;
  }

  /** Streaming: ends the call whose start went out with what was read of it. */
  private closeOpenCall(): void {
    const draft = this.reader!.drafts[this.ended];
    if (!this.open || !draft) return;
    const args = draft.args + this.reader!.closeArguments();
    this.sendArguments(args);
    this.endCall(args);
  }

  private completeAttempt(): void {
    const drafts = this.reader!.drafts;
    this.reader = null;
    if (!this.streamArguments) {
      const calls = drafts.map((draft) => this.validCall(draft));
      if (calls.some((call) => call === null)) {
        this.text(this.heldSpace + this.attempt);
        this.heldSpace = "";
        this.callsAllowed = true;
        return;
      }
      for (const call of calls) {
        this.emit({ type: "tool_call_start", index: this.nextIndex, name: call!.name });
        this.emit({ type: "tool_call_arguments", index: this.nextIndex, fragment: call!.args });
        this.emit({ type: "tool_call_end", index: this.nextIndex, arguments: call!.parsed });
        this.nextIndex += 1;
      }
    }
    this.heldSpace = "";
    this.afterCall = true;
    this.callsAllowed = true;
  }

  private validCall(draft: DraftCall): { name: string; args: string; parsed: Record<string, unknown> } | null {
    if (!draft.complete || draft.name === null || !this.toolNames.has(draft.name)) return null;
    const parsed = parseArguments(draft.args);
    return parsed ? { name: draft.name, args: draft.args, parsed } : null;
  }

  private failAttempt(): void {
    if (this.streamArguments && (this.open || this.ended > 0)) {
      // Calls already went out: close them and read the unit that broke the markup as text.
      this.closeOpenCall();
      this.reader = null;
      this.heldSpace = "";
      this.afterCall = true;
      this.callsAllowed = true;
      this.readAgain(this.attempt.slice(-1));
      return;
    }
    this.reader = null;
    this.text(this.heldSpace + this.attempt.slice(0, 1));
    this.heldSpace = "";
    if (this.rules.callsOnlyAtStart) this.callsAllowed = false;
    this.readAgain(this.attempt.slice(1));
  }

  /** The text ended inside an attempt. */
  private finishAttempt(): void {
    if (this.streamArguments && (this.open || this.ended > 0)) {
      this.closeOpenCall();
      this.reader = null;
      this.heldSpace = "";
    } else if (this.reader!.completeAtEnd()) {
      this.completeAttempt();
    } else {
      this.failAttempt();
    }
  }

  private text(text: string): void {
    this.emit({ type: "text", text });
  }

  /** Adds an event, merged into the previous one when both are text, or fragments of the same call. */
  private emit(event: ToolParseEvent): void {
    const last = this.events[this.events.length - 1];
    if (event.type === "text" && last?.type === "text") last.text += event.text;
    else if (event.type === "tool_call_arguments" && last?.type === "tool_call_arguments" && last.index === event.index)
      last.fragment += event.fragment;
    else this.events.push(event);
  }
}

function parseArguments(args: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(args);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}
