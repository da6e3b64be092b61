export type ToolCallFormat = "hermes" | "qwen3_coder" | "llama3_json" | "gemma_pythonic";

export type ToolParseEvent =
  | { type: "text"; text: string }
  | { type: "tool_call_start"; index: number; name: string }
  /** Fragments of the arguments as compact JSON; joined, they are the JSON of the end event's arguments. */
  | { type: "tool_call_arguments"; index: number; fragment: string }
  | { type: "tool_call_end"; index: number; arguments: Record<string, unknown> };

export interface ToolCallParser {
  /** Reads the next piece of generated text; returns what can be decided so far. */
  push(text: string): ToolParseEvent[];
  /** The generation ended: returns everything still held back. */
  finish(): ToolParseEvent[];
}

export interface ToolSpec {
  name: string;
  /** The tool's JSON schema. */
  parameters: Record<string, unknown>;
}

export interface ToolCallParserOptions {
  tools: ToolSpec[];
  /** Emit a call's start and argument fragments as they are read (constrained decoding), not once it is whole. */
  streamArguments: boolean;
}

/** more: the markup needs more; done: it is complete with this unit; fail: it is not markup after all. */
export type ReadStep = "more" | "done" | "fail";

/** A call as far as it has been read: the name once known, the arguments as compact JSON so far. */
export interface DraftCall {
  name: string | null;
  args: string;
  complete: boolean;
  /** Where the call's markup begins, in units from the start of its block (for a list of calls). */
  start?: number;
}

/**
 * Reads one block of call markup (one `<tool_call>…</tool_call>`, one Llama JSON object, one Gemma
 * list) unit by unit, starting with the unit that opened it.
 */
export interface CallReader {
  feed(unit: string): ReadStep;
  /** The calls of this block so far; all complete once feed says done. */
  readonly drafts: readonly DraftCall[];
  /** Whether the block can be taken as whole if the text ends here (only a closing tag missing). */
  completeAtEnd(): boolean;
  /** JSON that completes the last draft's arguments, for a call cut off after its start went out. */
  closeArguments(): string;
}

/** What tells one format apart to the streaming parser. */
export interface FormatRules {
  /** Whether a call's markup can begin with this unit (a reader then decides). */
  startsCall(unit: string): boolean;
  newReader(): CallReader;
  /** Units dropped right after a call (whitespace, and Llama's `;`). */
  isSeparator(unit: string): boolean;
  /** Llama: calls only where the reply begins or right after another call. */
  callsOnlyAtStart: boolean;
}
