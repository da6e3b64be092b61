/**
 * The OpenAI Chat Completions request, as zod schemas (also the source of /openapi.json). Unknown
 * fields are stripped, not refused, as OpenAI-compatible servers do: SDKs and agent frameworks send
 * fields (store, prediction, modalities, …) a local server has no use for. vLLM's sampling extras
 * (top_k, min_p, repetition_penalty) are accepted as vLLM accepts them.
 */
import { z } from "zod";

export const TextPart = z.object({ type: z.literal("text"), text: z.string() });
const MediaPart = <Type extends string>(type: Type) => z.object({ type: z.literal(type) }).loose();

const UserContent = z.union([
  z.string(),
  z.array(
    z.discriminatedUnion("type", [TextPart, MediaPart("image_url"), MediaPart("input_audio"), MediaPart("file")]),
  ),
]);
const TextContent = z.union([z.string(), z.array(TextPart)]);

export const ToolCallParam = z.object({
  id: z.string().min(1),
  type: z.literal("function").optional(),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

export const ChatMessageParam = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: TextContent, name: z.string().optional() }),
  z.object({ role: z.literal("developer"), content: TextContent, name: z.string().optional() }),
  z.object({ role: z.literal("user"), content: UserContent, name: z.string().optional() }),
  z.object({
    role: z.literal("assistant"),
    content: z.union([TextContent, z.array(z.object({ type: z.literal("refusal"), refusal: z.string() }))]).nullish(),
    tool_calls: z.array(ToolCallParam).optional(),
    name: z.string().optional(),
    refusal: z.string().nullish(),
    reasoning_content: z.string().nullish(),
  }),
  z.object({ role: z.literal("tool"), content: TextContent, tool_call_id: z.string().min(1) }),
]);
export type ChatMessageParam = z.infer<typeof ChatMessageParam>;

export const FunctionTool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "a function name is 1–64 letters, digits, underscores or dashes"),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullish(),
  }),
});

export const ToolChoiceParam = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string().min(1) }) }),
]);

export const ResponseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({ type: z.literal("json_schema"), json_schema: z.object({ name: z.string() }).loose() }),
]);

export const ChatCompletionRequest = z.object({
  model: z.string().min(1),
  messages: z.array(ChatMessageParam).min(1),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  seed: z.number().int().nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  n: z.number().int().nullish(),
  user: z.string().optional(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  response_format: ResponseFormat.optional(),
  tools: z.array(FunctionTool).optional(),
  tool_choice: ToolChoiceParam.optional(),
  parallel_tool_calls: z.boolean().optional(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().nullish(),
  top_k: z.number().int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().gt(0).nullish(),
  /** Not OpenAI's: the session id for clients that cannot set the X-Session-ID header. */
  session_id: z.string().optional(),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;
