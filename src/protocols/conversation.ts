/**
 * From a ChatRequest's messages to prompt token ids through the model's own chat template.
 *
 * Agent clients send conversations templates were not written for: consecutive user turns (Anthropic
 * allows them and merges them itself), and system messages in the middle of the conversation. The
 * rendering keeps each message where it is — moving a late system message to the top would change
 * the prompt's prefix and throw away the agent's cached KV every time one appears — and adapts only
 * as far as the template needs:
 *   1. consecutive messages of the same role (user, assistant, system) are merged into one turn;
 *   2. if the template refuses the result (Gemma's raises on anything but a leading system message
 *      and strict alternation), system messages after the first turn become user text in place,
 *      and the turns are merged again.
 * Both steps are pure functions of the messages, so the same history renders to the same tokens on
 * every turn and the agent's cache prefix stays valid.
 */
import { ChatTemplateError, type ChatTemplateMessage, type ModelTokenizer } from "../model/tokenizer.js";
import type { ToolCallFormat } from "../tools/parsers/index.js";
import { templateHandlesTools, writeToolsIntoMessages } from "../tools/prompt.js";
import type { ChatMessage, ToolDefinition } from "./chat.js";

/** Turns of the same role in a row become one (text joined by a blank line, tool calls concatenated). */
export function mergeConsecutiveTurns(messages: readonly ChatMessage[]): ChatMessage[] {
  const merged: ChatMessage[] = [];
  for (const message of messages) {
    const previous = merged.at(-1);
    if (previous && previous.role === message.role && message.role !== "tool") {
      const content = [previous.content, message.content].filter((text) => text !== "").join("\n\n");
      if (previous.role === "assistant" && message.role === "assistant") {
        merged[merged.length - 1] = {
          role: "assistant",
          content,
          toolCalls: [...previous.toolCalls, ...message.toolCalls],
        };
      } else {
        merged[merged.length - 1] = { ...previous, content };
      }
      continue;
    }
    merged.push(message);
  }
  return merged;
}

/** System messages after the first non-system one, rewritten as user turns that say what they are. */
export function inlineLateSystemMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  const firstTurn = messages.findIndex((message) => message.role !== "system");
  return messages.map((message, index) =>
    message.role === "system" && firstTurn !== -1 && index > firstTurn
      ? { role: "user", content: `System: ${message.content}` }
      : message,
  );
}

/** The message as chat templates read it (transformers' format: tool calls carry object arguments). */
function templateMessage(message: ChatMessage, toolNames: ReadonlyMap<string, string>): ChatTemplateMessage {
  switch (message.role) {
    case "assistant":
      return message.toolCalls.length === 0
        ? { role: "assistant", content: message.content }
        : {
            role: "assistant",
            content: message.content,
            tool_calls: message.toolCalls.map((call) => ({
              id: call.id,
              type: "function",
              function: { name: call.name, arguments: call.arguments },
            })),
          };
    case "tool":
      return {
        role: "tool",
        content: message.content,
        tool_call_id: message.toolCallId,
        name: toolNames.get(message.toolCallId),
      };
    default:
      return { role: message.role, content: message.content };
  }
}

export function templateTools(tools: readonly ToolDefinition[]): Array<Record<string, unknown>> {
  return tools.map((tool) => ({
    type: "function",
    function: { name: tool.name, description: tool.description, parameters: tool.parameters },
  }));
}

/**
 * The prompt's token ids, ending with the template's generation prompt. `tools` null keeps tools out
 * of the prompt entirely (tool_choice none, or a request without tools). A template without tool
 * support (Gemma 3's) gets tools, calls and results written into the messages in the family's
 * documented convention (src/tools/prompt.ts).
 */
export function renderPrompt(
  tokenizer: ModelTokenizer,
  conversation: readonly ChatMessage[],
  offered: readonly ToolDefinition[] | null,
  toolFormat: ToolCallFormat | null = null,
): number[] {
  let messages = conversation;
  let tools = offered;
  if (tools && tools.length > 0 && !templateHandlesTools(tokenizer.chatTemplateText)) {
    const written = writeToolsIntoMessages(toolFormat, messages, tools);
    if (written) {
      messages = written.map((message): ChatMessage =>
        message.role === "assistant"
          ? { role: "assistant", content: message.content, toolCalls: [] }
          : { role: message.role, content: message.content },
      );
      tools = null;
    }
  }
  const toolNames = new Map<string, string>();
  for (const message of messages) {
    if (message.role === "assistant") for (const call of message.toolCalls) toolNames.set(call.id, call.name);
  }
  const options = { addGenerationPrompt: true, tools: tools && tools.length > 0 ? templateTools(tools) : undefined };
  const render = (turns: ChatMessage[]) =>
    tokenizer.renderAndEncode(
      turns.map((message) => templateMessage(message, toolNames)),
      options,
    );

  const merged = mergeConsecutiveTurns(messages);
  try {
    return render(merged);
  } catch (error) {
    const inlined = mergeConsecutiveTurns(inlineLateSystemMessages(merged));
    const changed = inlined.length !== merged.length || inlined.some((message, index) => message !== merged[index]);
    if (!(error instanceof ChatTemplateError) || !changed) throw error;
    return render(inlined);
  }
}
