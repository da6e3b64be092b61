/**
 * POST /v1/chat/completions: the request as a ChatRequest, and the engine's events as OpenAI's
 * `chat.completion` object or its `chat.completion.chunk` stream (a first chunk carrying the role,
 * content deltas, a last chunk with finish_reason, the usage chunk when stream_options asks for it,
 * then `data: [DONE]`). usage.prompt_tokens_details.cached_tokens counts the prompt tokens whose KV
 * came from agent memory.
 */
import { randomBytes } from "node:crypto";
import type { FinishReason, Usage } from "../../engine/events.js";
import type { ChatEvent } from "../../tools/tool-stream.js";
import type { ChatMessage, ChatRequest, RequestScope, ToolChoice, ToolDefinition } from "../chat.js";
import { dataFrame, json, type ProtocolResponse, type SseFrame } from "../response.js";
import { collectAnswer, type ChatRuntime, type SamplingFieldNames } from "../runtime.js";
import { fieldError, parseRequest } from "../validation.js";
import { openAIErrorBody } from "./errors.js";
import { ChatCompletionRequest, type ChatMessageParam } from "./schema.js";

const SAMPLING_FIELDS: SamplingFieldNames = {
  temperature: "temperature",
  topP: "top_p",
  topK: "top_k",
  minP: "min_p",
  seed: "seed",
  presencePenalty: "presence_penalty",
  frequencyPenalty: "frequency_penalty",
  repetitionPenalty: "repetition_penalty",
};

const textOf = (content: string | Array<{ type: string; text?: string; refusal?: string }>) =>
  typeof content === "string" ? content : content.map((part) => part.text ?? part.refusal ?? "").join("\n\n");

function parseArguments(text: string): Record<string, unknown> | string {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // kept as the client sent it
  }
  return text;
}

function convertMessage(message: ChatMessageParam, index: number): ChatMessage {
  switch (message.role) {
    case "system":
    case "developer":
      return { role: "system", content: textOf(message.content) };
    case "user":
      if (typeof message.content !== "string") {
        message.content.forEach((part, partIndex) => {
          if (part.type !== "text") {
            throw fieldError(
              `messages.${index}.content.${partIndex}`,
              `${part.type} parts are not supported: this model reads text only`,
            );
          }
        });
      }
      return { role: "user", content: textOf(message.content) };
    case "assistant":
      return {
        role: "assistant",
        content: message.content == null ? "" : textOf(message.content),
        toolCalls: (message.tool_calls ?? []).map((call) => ({
          id: call.id,
          name: call.function.name,
          arguments: parseArguments(call.function.arguments),
        })),
      };
    case "tool":
      return { role: "tool", content: textOf(message.content), toolCallId: message.tool_call_id };
  }
}

function convertTools(request: ChatCompletionRequest): { tools: ToolDefinition[]; toolChoice: ToolChoice } {
  const tools: ToolDefinition[] = [];
  const seen = new Set<string>();
  (request.tools ?? []).forEach((tool, index) => {
    const { name, description, parameters } = tool.function;
    if (seen.has(name)) throw fieldError(`tools.${index}.function.name`, `duplicate tool name "${name}"`);
    seen.add(name);
    tools.push({ name, description: description ?? "", parameters: parameters ?? { type: "object", properties: {} } });
  });
  const choice = request.tool_choice;
  let toolChoice: ToolChoice = "auto";
  if (choice === "none" || choice === "required") toolChoice = choice;
  else if (typeof choice === "object") {
    if (!seen.has(choice.function.name)) {
      throw fieldError("tool_choice.function.name", `no tool named "${choice.function.name}" in tools`);
    }
    toolChoice = { name: choice.function.name };
  }
  if (toolChoice === "required" && tools.length === 0) throw fieldError("tool_choice", '"required" needs tools');
  return { tools, toolChoice };
}

export function toChatRequest(request: ChatCompletionRequest): ChatRequest {
  if (request.n != null && request.n !== 1) throw fieldError("n", "only n = 1 is supported (one choice per request)");
  if (request.logprobs) throw fieldError("logprobs", "log probabilities are not supported by this server");
  const format = request.response_format;
  const responseSchema =
    format?.type === "json_object"
      ? true
      : format?.type === "json_schema"
        ? ((format.json_schema.schema as Record<string, unknown> | undefined) ?? true)
        : null;
  const stop = request.stop == null ? [] : typeof request.stop === "string" ? [request.stop] : request.stop;
  return {
    model: request.model,
    messages: request.messages.map(convertMessage),
    ...convertTools(request),
    maxTokens: request.max_completion_tokens ?? request.max_tokens ?? null,
    sampling: {
      temperature: request.temperature ?? undefined,
      topP: request.top_p ?? undefined,
      topK: request.top_k ?? undefined,
      minP: request.min_p ?? undefined,
      seed: request.seed ?? undefined,
      presencePenalty: request.presence_penalty ?? undefined,
      frequencyPenalty: request.frequency_penalty ?? undefined,
      repetitionPenalty: request.repetition_penalty ?? undefined,
    },
    stop,
    responseSchema,
  };
}

export const finishReason = (reason: FinishReason | "tool_calls") =>
  reason === "tool_calls" ? "tool_calls" : reason === "length" || reason === "context_length" ? "length" : "stop";

export function openAIUsage(usage: Usage) {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.generatedTokens,
    total_tokens: usage.promptTokens + usage.generatedTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

export function completionId(): string {
  return `chatcmpl-${randomBytes(15).toString("base64url")}`;
}

/** Tool-call ids in OpenAI's style. */
export function callId(): string {
  return `call_${randomBytes(18).toString("base64url").replace(/[-_]/g, "x")}`;
}

export async function createChatCompletion(
  runtime: ChatRuntime,
  body: unknown,
  scope: RequestScope,
): Promise<ProtocolResponse> {
  const request = parseRequest(ChatCompletionRequest, body);
  const generation = runtime.start(toChatRequest(request), scope, SAMPLING_FIELDS);
  const head = { id: completionId(), created: Math.floor(Date.now() / 1000), model: request.model };
  if (request.stream) {
    return {
      kind: "stream",
      frames: streamCompletion(generation.events, head, request.stream_options?.include_usage === true, scope),
      heartbeat: { comment: "ping" },
    };
  }

  const { text, toolCalls, done } = await collectAnswer(generation.events);
  const calls = toolCalls.map((call) => ({
    id: callId(),
    type: "function",
    function: { name: call.name, arguments: JSON.stringify(call.arguments) },
  }));
  return json({
    ...head,
    object: "chat.completion",
    system_fingerprint: null,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: calls.length > 0 && text === "" ? null : text,
          refusal: null,
          annotations: [],
          ...(calls.length > 0 ? { tool_calls: calls } : {}),
        },
        logprobs: null,
        finish_reason: finishReason(done.finishReason),
      },
    ],
    usage: openAIUsage(done.usage),
  });
}

async function* streamCompletion(
  events: AsyncIterable<ChatEvent>,
  head: { id: string; created: number; model: string },
  includeUsage: boolean,
  scope: RequestScope,
): AsyncIterable<SseFrame> {
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    dataFrame({
      ...head,
      object: "chat.completion.chunk",
      system_fingerprint: null,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(includeUsage ? { usage: null } : {}),
    });
  try {
    for await (const event of events) {
      if (event.type === "prompt") yield chunk({ role: "assistant", content: "", refusal: null }, null);
      else if (event.type === "text") yield chunk({ content: event.text }, null);
      else if (event.type === "tool_call_start") {
        const call = {
          index: event.index,
          id: callId(),
          type: "function",
          function: { name: event.name, arguments: "" },
        };
        yield chunk({ tool_calls: [call] }, null);
      } else if (event.type === "tool_call_arguments") {
        yield chunk({ tool_calls: [{ index: event.index, function: { arguments: event.fragment } }] }, null);
      } else if (event.type === "done") {
        yield chunk({}, finishReason(event.finishReason));
        if (includeUsage) {
          yield dataFrame({
            ...head,
            object: "chat.completion.chunk",
            system_fingerprint: null,
            choices: [],
            usage: openAIUsage(event.usage),
          });
        }
        yield { data: "[DONE]" };
      }
    }
  } catch (error) {
    if (scope.signal.aborted) return;
    yield dataFrame(openAIErrorBody("internal", `generation failed: ${(error as Error).message}`));
  }
}
