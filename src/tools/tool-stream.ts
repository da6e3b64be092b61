/**
 * The engine's events as chat events: generated text split by the family's tool-call parser into text
 * and tool calls while generating, so the protocols can stream `tool_use` blocks / `tool_calls` deltas
 * as the model writes them. A turn that made calls and ended on end-of-turn ends with `tool_calls`.
 */
import type { FinishReason, GenerationEvent, Timings, Usage } from "../engine/events.js";
import type { ToolCallParser, ToolParseEvent } from "./parsers/index.js";

export type ChatEvent =
  | { type: "prompt"; promptTokens: number; cachedTokens: number }
  | { type: "text"; text: string }
  | { type: "tool_call_start"; index: number; name: string }
  | { type: "tool_call_arguments"; index: number; fragment: string }
  | { type: "tool_call_end"; index: number; arguments: Record<string, unknown> }
  | {
      type: "done";
      finishReason: FinishReason | "tool_calls";
      stopSequence: string | null;
      usage: Usage;
      timings: Timings;
    };

export type DoneChatEvent = Extract<ChatEvent, { type: "done" }>;

function fromParser(event: ToolParseEvent): ChatEvent {
  // (Each case returns: the switch covers every parser event.)
  switch (event.type) {
    case "text":
      return { type: "text", text: event.text };
    case "tool_call_start":
      return { type: "tool_call_start", index: event.index, name: event.name };
    case "tool_call_arguments":
      return { type: "tool_call_arguments", index: event.index, fragment: event.fragment };
    case "tool_call_end":
      return { type: "tool_call_end", index: event.index, arguments: event.arguments };
  }
}

/** Chat events from generation events; without a parser, every delta is text. */
export async function* chatEvents(
  events: AsyncIterable<GenerationEvent>,
  parser: ToolCallParser | null,
): AsyncIterable<ChatEvent> {
  let calls = 0;
  const out = function* (parsed: ToolParseEvent[]): Iterable<ChatEvent> {
    for (const event of parsed) {
      if (event.type === "tool_call_end") calls++;
      if (event.type === "text" && event.text === "") continue;
      yield fromParser(event);
    }
  };
  for await (const event of events) {
    if (event.type === "prompt") yield event;
    else if (event.type === "delta") {
      if (!parser) {
        if (event.text !== "") yield { type: "text", text: event.text };
      } else yield* out(parser.push(event.text));
    } else {
      if (parser) yield* out(parser.finish());
      const finishReason = calls > 0 && event.finishReason === "stop" ? "tool_calls" : event.finishReason;
      yield { ...event, finishReason };
    }
  }
}

/** A whole answer (non-streaming responses): its text and complete tool calls, and how it ended. */
export interface ChatAnswer {
  text: string;
  toolCalls: Array<{ name: string; arguments: Record<string, unknown> }>;
  done: DoneChatEvent;
}
