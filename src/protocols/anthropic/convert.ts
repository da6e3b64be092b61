/**
 * An Anthropic Messages request as the internal ChatRequest. Content blocks become the template's
 * message shapes: text joins into the turn's content, `tool_use` blocks become the assistant's tool
 * calls, each `tool_result` becomes a `tool` message in place (before any text that follows it in the
 * same user turn), and thinking or server-tool blocks stay out of the prompt.
 */
import type { SamplingFieldNames } from "../runtime.js";
import type { ChatMessage, ChatRequest, ToolCall, ToolChoice, ToolDefinition } from "../chat.js";
import { fieldError } from "../validation.js";
import type { ContentBlock, CountTokensRequest, MessagesRequest } from "./schema.js";

export const ANTHROPIC_SAMPLING_FIELDS: SamplingFieldNames = {
  temperature: "temperature",
  topP: "top_p",
  topK: "top_k",
};

const MEDIA = new Set(["image", "document"]);
const textOnly = (param: string, type: string) =>
  fieldError(param, `${type} blocks are not supported: this model reads text only`);

function systemText(system: CountTokensRequest["system"]): string | null {
  if (system === undefined) return null;
  const text = typeof system === "string" ? system : system.map((block) => block.text).join("\n\n");
  return text === "" ? null : text;
}

function toolResultText(block: Extract<ContentBlock, { type: "tool_result" }>, param: string): string {
  let text: string;
  if (block.content === undefined) text = "";
  else if (typeof block.content === "string") text = block.content;
  else {
    const parts: string[] = [];
    block.content.forEach((part, index) => {
      if (MEDIA.has(part.type)) throw textOnly(`${param}.content.${index}`, part.type);
      if (part.type === "text") parts.push(part.text);
    });
    text = parts.join("\n\n");
  }
  // The model learns a call failed the way the tool's own output would say it.
  return block.is_error ? `Error: ${text}` : text;
}

function convertMessage(message: MessagesRequest["messages"][number], index: number): ChatMessage[] {
  const param = `messages.${index}.content`;
  if (typeof message.content === "string") {
    return message.role === "assistant"
      ? [{ role: "assistant", content: message.content, toolCalls: [] }]
      : [{ role: message.role, content: message.content }];
  }
  const out: ChatMessage[] = [];
  let text: string[] = [];
  const toolCalls: ToolCall[] = [];
  const flushText = () => {
    if (text.length === 0) return;
    if (message.role !== "assistant") out.push({ role: message.role, content: text.join("\n\n") });
    text = [];
  };
  message.content.forEach((block, blockIndex) => {
    const blockParam = `${param}.${blockIndex}`;
    if (MEDIA.has(block.type)) throw textOnly(blockParam, block.type);
    if (block.type === "text") text.push(block.text);
    else if (block.type === "tool_use") {
      if (message.role !== "assistant") throw fieldError(blockParam, "tool_use blocks belong in assistant messages");
      toolCalls.push({ id: block.id, name: block.name, arguments: block.input });
    } else if (block.type === "tool_result") {
      if (message.role !== "user") throw fieldError(blockParam, "tool_result blocks belong in user messages");
      flushText();
      out.push({ role: "tool", content: toolResultText(block, blockParam), toolCallId: block.tool_use_id });
    }
  });
  if (message.role === "assistant") {
    out.push({ role: "assistant", content: text.join("\n\n"), toolCalls });
  } else flushText();
  return out;
}

export function convertMessages(request: CountTokensRequest): ChatMessage[] {
  const messages: ChatMessage[] = [];
  const system = systemText(request.system);
  if (system !== null) messages.push({ role: "system", content: system });
  request.messages.forEach((message, index) => messages.push(...convertMessage(message, index)));
  return messages;
}

export function convertTools(request: CountTokensRequest): ToolDefinition[] {
  const tools: ToolDefinition[] = [];
  const seen = new Set<string>();
  (request.tools ?? []).forEach((tool, index) => {
    // Server tools (web search, code execution…) run on Anthropic's side; a local model cannot call them.
    if (tool.input_schema === undefined) return;
    if (seen.has(tool.name)) throw fieldError(`tools.${index}.name`, `duplicate tool name "${tool.name}"`);
    seen.add(tool.name);
    tools.push({ name: tool.name, description: tool.description ?? "", parameters: tool.input_schema });
  });
  return tools;
}

export function convertToolChoice(request: CountTokensRequest): ToolChoice {
  const choice = request.tool_choice;
  if (!choice || choice.type === "auto") return "auto";
  if (choice.type === "none") return "none";
  if (choice.type === "any") return "required";
  return { name: choice.name };
}

export function toChatRequest(request: MessagesRequest): ChatRequest {
  const tools = convertTools(request);
  const toolChoice = convertToolChoice(request);
  if (typeof toolChoice === "object" && !tools.some((tool) => tool.name === toolChoice.name)) {
    throw fieldError("tool_choice.name", `no tool named "${toolChoice.name}" in tools`);
  }
  return {
    model: request.model,
    messages: convertMessages(request),
    tools,
    toolChoice,
    maxTokens: request.max_tokens,
    sampling: { temperature: request.temperature, topP: request.top_p, topK: request.top_k },
    stop: request.stop_sequences ?? [],
    responseSchema: null,
  };
}
