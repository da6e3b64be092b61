/**
 * The one internal request every protocol converts into (Anthropic Messages, OpenAI Chat Completions,
 * the Agent API's chat form). Messages are already in the shape chat templates read — OpenAI-style
 * roles, assistant tool calls with object arguments, tool results as `tool` messages — so the
 * template sees the same conversation whichever protocol carried it.
 */
import type { MemoryScope } from "../engine/kv-memory.js";
import type { SamplingParams } from "../engine/sampling.js";

export interface ToolCall {
  id: string;
  name: string;
  /** Parsed arguments; a string only when a client sent arguments that are not JSON. */
  arguments: Record<string, unknown> | string;
}

export type ChatMessage =
  | { role: "system"; content: string }
  | { role: "user"; content: string }
  | { role: "assistant"; content: string; toolCalls: ToolCall[] }
  | { role: "tool"; content: string; toolCallId: string };

export interface ToolDefinition {
  name: string;
  description: string;
  /** JSON Schema of the arguments. */
  parameters: Record<string, unknown>;
}

/** auto: the model decides; none: tools stay out of the prompt; required: some tool; or one named tool. */
export type ToolChoice = "auto" | "none" | "required" | { name: string };

export interface ChatRequest {
  /** The model name the client asked for; echoed back, whatever model serves it. */
  model: string;
  messages: ChatMessage[];
  tools: ToolDefinition[];
  toolChoice: ToolChoice;
  /** null: the server's default (SEMANTIC_MLX_DEFAULT_MAX_TOKENS). */
  maxTokens: number | null;
  /** What the client set; the rest comes from the server's defaults. */
  sampling: Partial<SamplingParams>;
  stop: string[];
  /** OpenAI's response_format: any JSON object (true) or a JSON schema; null for free text. */
  responseSchema: Record<string, unknown> | true | null;
}

/** Who is asking, and on which route: the request's memory scope, abort signal and metric label. */
export interface RequestScope {
  memory: MemoryScope;
  signal: AbortSignal;
  /** The route pattern, for the `endpoint` label of the token and duration metrics. */
  endpoint: string;
}
