/**
 * Tools for a model whose chat template has no tool support: Gemma 3's own template ignores `tools`,
 * so the tools, past calls and their results are written into ordinary messages following the
 * documented Gemma convention (Google's function-calling guide; the same text the Gemma test-model
 * template in src/model/test-model/chat-templates.ts renders, which the gemma_pythonic parser reads):
 *   - instructions and the function declarations (a JSON list) join the system prompt, which Gemma's
 *     template folds into the first user turn;
 *   - a call is one line `[name(arg=<json>, other=<json>), name2()]` after the assistant's text;
 *   - each result is a ```tool_output fenced block in a user turn, consecutive results in one turn.
 * The rewrite is a pure function of the messages, so a history renders the same way every turn.
 */
import type { ToolCallFormat } from "./parsers/index.js";

export interface PromptMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  toolCalls?: ReadonlyArray<{ name: string; arguments: Record<string, unknown> | string }>;
}

export interface PromptTool {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

const GEMMA_TOOL_INSTRUCTIONS =
  "You have access to functions. If you decide to invoke any of the function(s), you MUST put it in the format of\n" +
  "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n\n" +
  "You SHOULD NOT include any other text in the response if you call a function\n";

const FENCE = "```";

/** JSON as Python's json.dumps writes it by default (and Jinja's tojson): a space after `:` and `,`. */
export function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(", ")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, item]) => item !== undefined);
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}: ${pythonJson(item)}`).join(", ")}}`;
  }
  return JSON.stringify(value ?? null);
}

function gemmaCall(call: { name: string; arguments: Record<string, unknown> | string }): string {
  const args =
    typeof call.arguments === "string"
      ? call.arguments
      : Object.entries(call.arguments)
          .map(([name, value]) => `${name}=${pythonJson(value)}`)
          .join(", ");
  return `${call.name}(${args})`;
}

/** Whether a chat template reads the `tools` variable at all. */
export function templateHandlesTools(template: string | null): boolean {
  return template !== null && /\btools\b/.test(template);
}

/** A message of the rewritten conversation: no tool roles or tool calls left, only text. */
export interface TextMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/**
 * The messages with tools written in, for a template that has no tool support; null when the format
 * has no documented convention to write them in (the tools then stay out of the prompt).
 */
export function writeToolsIntoMessages(
  format: ToolCallFormat | null,
  messages: readonly PromptMessage[],
  tools: readonly PromptTool[],
): TextMessage[] | null {
  if (format !== "gemma_pythonic") return null;
  const declarations = tools.map(({ name, description, parameters }) => ({ name, description, parameters }));
  const preamble = GEMMA_TOOL_INSTRUCTIONS + JSON.stringify(declarations, null, 2);
  const [first] = messages;
  const out: TextMessage[] = [
    { role: "system", content: first?.role === "system" ? `${first.content}\n\n${preamble}` : preamble },
  ];
  let resultsTurnOpen = false;
  for (const message of first?.role === "system" ? messages.slice(1) : messages) {
    if (message.role === "tool") {
      const block = `${FENCE}tool_output\n${message.content.trim()}\n${FENCE}`;
      // Consecutive results share one user turn, one block per line.
      if (resultsTurnOpen) out[out.length - 1]!.content += `\n${block}`;
      else out.push({ role: "user", content: block });
      resultsTurnOpen = true;
      continue;
    }
    resultsTurnOpen = false;
    if (message.role === "assistant" && message.toolCalls && message.toolCalls.length > 0) {
      const text = message.content.trim();
      const calls = `[${message.toolCalls.map(gemmaCall).join(", ")}]`;
      out.push({ role: "assistant", content: text === "" ? calls : `${text}\n${calls}` });
      continue;
    }
    out.push({ role: message.role, content: message.content });
  }
  return out;
}
