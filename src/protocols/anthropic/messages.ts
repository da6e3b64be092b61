/**
 * POST /v1/messages and /v1/messages/count_tokens: the engine's events as Anthropic's Message and as
 * its event stream (message_start, content_block_start / _delta / _stop, message_delta, message_stop,
 * `ping` while the prompt is prefilled, `error` if generation fails part-way).
 *
 * Usage follows Anthropic's prompt-caching arithmetic, where the three input counts add up to the
 * prompt: cache_read_input_tokens = tokens whose KV came from agent memory; cache_creation_input_tokens
 * = tokens prefilled now and kept for the agent's next turn; input_tokens = the rest (prefilled and
 * not kept, i.e. a request that names no agent).
 */
import { randomBytes } from "node:crypto";
import type { FinishReason, Usage } from "../../engine/events.js";
import type { ChatEvent } from "../../tools/tool-stream.js";
import type { RequestScope } from "../chat.js";
import { dataFrame, json, type ProtocolResponse, type SseFrame } from "../response.js";
import { collectAnswer, type ChatRuntime } from "../runtime.js";
import { parseRequest } from "../validation.js";
import {
  ANTHROPIC_SAMPLING_FIELDS,
  convertMessages,
  convertToolChoice,
  convertTools,
  toChatRequest,
} from "./convert.js";
import { CountTokensRequest, MessagesRequest } from "./schema.js";
import { anthropicErrorBody } from "./errors.js";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Ids in Anthropic's style: a prefix and 24 base-62 characters. */
export function anthropicId(prefix: string): string {
  const bytes = randomBytes(24);
  let id = `${prefix}_01`;
  for (let index = 2; index < 24; index++) id += BASE62[bytes[index]! % 62];
  return id;
}

export function stopReason(reason: FinishReason | "tool_calls"): string {
  switch (reason) {
    case "tool_calls":
      return "tool_use";
    case "length":
      return "max_tokens";
    case "stop_sequence":
      return "stop_sequence";
    case "context_length":
      return "model_context_window_exceeded";
    default:
      return "end_turn";
  }
}

interface InputUsage {
  input_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

function inputUsage(prompt: Pick<Usage, "promptTokens" | "cachedTokens">, scope: RequestScope): InputUsage {
  const prefilled = prompt.promptTokens - prompt.cachedTokens;
  const kept = scope.memory.agentId !== null ? prefilled : 0;
  return {
    input_tokens: prefilled - kept,
    cache_creation_input_tokens: kept,
    cache_read_input_tokens: prompt.cachedTokens,
  };
}

export async function createMessage(
  runtime: ChatRuntime,
  body: unknown,
  scope: RequestScope,
): Promise<ProtocolResponse> {
  const request = parseRequest(MessagesRequest, body);
  const generation = runtime.start(toChatRequest(request), scope, ANTHROPIC_SAMPLING_FIELDS);
  const id = anthropicId("msg");
  if (request.stream) {
    return {
      kind: "stream",
      frames: streamMessage(generation.events, { id, model: request.model, scope }),
      heartbeat: dataFrame({ type: "ping" }, "ping"),
    };
  }

  const { text, toolCalls, done } = await collectAnswer(generation.events);
  return json({
    id,
    type: "message",
    role: "assistant",
    model: request.model,
    content: [
      ...(text === "" ? [] : [{ type: "text", text }]),
      ...toolCalls.map((call) => ({
        type: "tool_use",
        id: anthropicId("toolu"),
        name: call.name,
        input: call.arguments,
      })),
    ],
    stop_reason: stopReason(done.finishReason),
    stop_sequence: done.stopSequence,
    usage: { ...inputUsage(done.usage, scope), output_tokens: done.usage.generatedTokens },
  });
}

/**
 * Content blocks as Anthropic streams them: a text block opened at the first text, closed when a tool
 * call starts; each call a `tool_use` block whose input arrives as `input_json_delta` fragments.
 */
async function* streamMessage(
  events: AsyncIterable<ChatEvent>,
  message: { id: string; model: string; scope: RequestScope },
): AsyncIterable<SseFrame> {
  const frame = (payload: { type: string } & Record<string, unknown>) => dataFrame(payload, payload.type);
  let blocks = 0;
  let open: "text" | "tool_use" | null = null;
  const close = function* () {
    if (open !== null) yield frame({ type: "content_block_stop", index: blocks - 1 });
    open = null;
  };
  try {
    for await (const event of events) {
      switch (event.type) {
        case "prompt":
          yield frame({
            type: "message_start",
            message: {
              id: message.id,
              type: "message",
              role: "assistant",
              model: message.model,
              content: [],
              stop_reason: null,
              stop_sequence: null,
              usage: { ...inputUsage(event, message.scope), output_tokens: 0 },
            },
          });
          break;
        case "text":
          if (open !== "text") {
            yield* close();
            yield frame({ type: "content_block_start", index: blocks++, content_block: { type: "text", text: "" } });
            open = "text";
          }
          yield frame({
            type: "content_block_delta",
            index: blocks - 1,
            delta: { type: "text_delta", text: event.text },
          });
          break;
        case "tool_call_start":
          yield* close();
          yield frame({
            type: "content_block_start",
            index: blocks++,
            content_block: { type: "tool_use", id: anthropicId("toolu"), name: event.name, input: {} },
          });
          open = "tool_use";
          break;
        case "tool_call_arguments":
          yield frame({
            type: "content_block_delta",
            index: blocks - 1,
            delta: { type: "input_json_delta", partial_json: event.fragment },
          });
          break;
        case "tool_call_end":
          yield* close();
          break;
        case "done":
          yield* close();
          yield frame({
            type: "message_delta",
            delta: { stop_reason: stopReason(event.finishReason), stop_sequence: event.stopSequence },
            usage: { ...inputUsage(event.usage, message.scope), output_tokens: event.usage.generatedTokens },
          });
          yield frame({ type: "message_stop" });
      }
    }
  } catch (error) {
    if (message.scope.signal.aborted) return;
    yield dataFrame(anthropicErrorBody("internal", `generation failed: ${(error as Error).message}`), "error");
  }
}

export function countTokens(runtime: ChatRuntime, body: unknown): ProtocolResponse {
  const request = parseRequest(CountTokensRequest, body);
  const tokens = runtime.promptTokens({
    messages: convertMessages(request),
    tools: convertTools(request),
    toolChoice: convertToolChoice(request),
  });
  return json({ input_tokens: tokens.length });
}
