/**
 * The Anthropic Messages API request, as zod schemas (also the source of /openapi.json).
 *
 * Fields a local model cannot honour — thinking, context_management, output_config, cache_control,
 * service_tier, container, mcp_servers and any field added later — are accepted and ignored: objects
 * here strip unknown keys instead of refusing them, because Claude Code and the SDKs send new fields
 * long before a local server learns about them. Content block types are checked by name, so a
 * malformed block is an error that names it rather than something silently dropped.
 */
import { z } from "zod";

const cacheControl = { cache_control: z.unknown().optional() };

export const TextBlock = z.object({ type: z.literal("text"), text: z.string(), ...cacheControl });

/** Images, documents and other media: accepted by the schema so the error can say the model is text-only. */
const MediaBlock = <Type extends string>(type: Type) =>
  z.object({ type: z.literal(type), source: z.unknown().optional(), ...cacheControl });

const ToolResultContentBlock = z.discriminatedUnion("type", [
  TextBlock,
  MediaBlock("image"),
  MediaBlock("document"),
  z.object({ type: z.literal("search_result") }).loose(),
]);

export const ToolUseBlock = z.object({
  type: z.literal("tool_use"),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.record(z.string(), z.unknown()),
  ...cacheControl,
});

export const ToolResultBlock = z.object({
  type: z.literal("tool_result"),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(ToolResultContentBlock)]).optional(),
  is_error: z.boolean().optional(),
  ...cacheControl,
});

/** Blocks whose content only Anthropic's servers can use: kept out of the prompt. */
const IgnoredBlock = <Type extends string>(type: Type) => z.object({ type: z.literal(type) }).loose();

export const ContentBlock = z.discriminatedUnion("type", [
  TextBlock,
  ToolUseBlock,
  ToolResultBlock,
  MediaBlock("image"),
  MediaBlock("document"),
  IgnoredBlock("thinking"),
  IgnoredBlock("redacted_thinking"),
  IgnoredBlock("server_tool_use"),
  IgnoredBlock("web_search_tool_result"),
  IgnoredBlock("web_fetch_tool_result"),
  IgnoredBlock("code_execution_tool_result"),
  IgnoredBlock("bash_code_execution_tool_result"),
  IgnoredBlock("text_editor_code_execution_tool_result"),
  IgnoredBlock("mcp_tool_use"),
  IgnoredBlock("mcp_tool_result"),
  IgnoredBlock("container_upload"),
  IgnoredBlock("search_result"),
]);
export type ContentBlock = z.infer<typeof ContentBlock>;

export const MessageParam = z.object({
  // `system` inside messages: agent clients send mid-conversation system messages.
  role: z.enum(["user", "assistant", "system"]),
  content: z.union([z.string(), z.array(ContentBlock)]),
});

/**
 * A custom tool has an input_schema; Anthropic's server tools (web_search_…, bash_…, text_editor_…)
 * have a versioned `type` instead and are accepted but not offered to a local model.
 */
export const Tool = z
  .object({
    type: z.string().optional(),
    name: z.string().min(1).max(128),
    description: z.string().optional(),
    input_schema: z.record(z.string(), z.unknown()).optional(),
    ...cacheControl,
  })
  .loose()
  .refine((tool) => (tool.type !== undefined && tool.type !== "custom") || tool.input_schema !== undefined, {
    message: "a custom tool needs an input_schema (a JSON Schema object)",
    path: ["input_schema"],
  });

export const ToolChoice = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auto"), disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal("any"), disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal("tool"), name: z.string().min(1), disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal("none") }),
]);

export const MessagesRequest = z.object({
  model: z.string().min(1),
  max_tokens: z.number().int().min(1),
  messages: z.array(MessageParam).min(1),
  system: z.union([z.string(), z.array(TextBlock)]).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  stop_sequences: z.array(z.string()).optional(),
  stream: z.boolean().optional(),
  metadata: z.object({ user_id: z.string().nullable().optional() }).loose().optional(),
  tools: z.array(Tool).optional(),
  tool_choice: ToolChoice.optional(),
  /** Not Anthropic's: the session id for clients that cannot set the X-Session-ID header. */
  session_id: z.string().optional(),
});
export type MessagesRequest = z.infer<typeof MessagesRequest>;

/** count_tokens takes the prompt half of a Messages request. */
export const CountTokensRequest = MessagesRequest.omit({
  max_tokens: true,
  temperature: true,
  top_p: true,
  top_k: true,
  stop_sequences: true,
  stream: true,
  metadata: true,
});
export type CountTokensRequest = z.infer<typeof CountTokensRequest>;
