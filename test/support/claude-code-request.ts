/**
 * A request shaped like the ones Claude Code sends to /v1/messages?beta=true: the billing line and
 * two cached system blocks, a system message inside `messages`, a thinking block with its signature
 * sent back, tool use and tool results, 24 tools with JSON-schema inputs, the beta fields a local
 * model cannot honour (thinking, context_management, output_config), and a body of about 70 KB.
 * The text is made from fixed sentences, so its size and token count are the same on every run.
 */
// Sentences the test tokenizers learned their merges from (src/model/test-model/tokenizer-corpus.ts),
// so the prose costs about as many tokens per character (~4.5) as English does with a real tokenizer.
const SENTENCES = [
  "An agent keeps its memory between turns: it reads the conversation, calls a tool when it needs one, and answers the user.",
  "The user asked the assistant a question. The assistant thought about it, then wrote a short and helpful answer.",
  "You are a helpful assistant. Answer the question as well as you can, and say so when you do not know.",
  "Please summarize the following document in three sentences, and list the people it mentions.",
  "The server streams tokens to the client as soon as they are generated, so the reader sees the answer grow.",
  "Memory is the difference between a tool and a colleague: a colleague remembers what you told it yesterday.",
];

/** Deterministic prose of about `characters` characters. */
export function prose(characters: number, seed = 1): string {
  let state = seed;
  const sentences: string[] = [];
  let length = 0;
  while (length < characters) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const sentence = SENTENCES[state % SENTENCES.length]!;
    sentences.push(sentence);
    length += sentence.length + 1;
  }
  return sentences.join(" ");
}

const TOOL_NAMES = [
  "Task",
  "Bash",
  "Glob",
  "Grep",
  "ExitPlanMode",
  "Read",
  "Edit",
  "MultiEdit",
  "Write",
  "NotebookEdit",
  "WebFetch",
  "TodoWrite",
  "WebSearch",
  "BashOutput",
  "KillShell",
  "SlashCommand",
  "ListMcpResources",
  "ReadMcpResource",
  "AskUserQuestion",
  "Skill",
  "LSP",
  "EnterPlanMode",
  "mcp__github__create_issue",
  "mcp__github__list_pulls",
];

function tool(name: string, index: number) {
  return {
    name,
    description: `${name}: ${prose(300, index + 7)}`,
    input_schema: {
      $schema: "http://json-schema.org/draft-07/schema#",
      type: "object",
      additionalProperties: false,
      properties: {
        path: { type: "string", description: "Absolute path of the file or directory to work on" },
        pattern: { type: "string", description: "A glob or regular expression" },
        limit: { type: "integer", minimum: 1, maximum: 2000, description: "Most lines or results to return" },
        mode: { type: "string", enum: ["content", "files_with_matches", "count"] },
        options: {
          type: "object",
          properties: { recursive: { type: "boolean" }, timeout_ms: { type: "number", maximum: 600000 } },
        },
        items: { type: "array", items: { type: "object", properties: { id: { type: "string" } }, required: ["id"] } },
      },
      required: index % 2 === 0 ? ["path"] : ["pattern"],
    },
  };
}

/** Thinking signatures are opaque base64 of a few KB, sent back verbatim with each thinking block. */
function signature(characters: number): string {
  return Buffer.from(prose(Math.ceil((characters * 3) / 4), characters))
    .toString("base64")
    .slice(0, characters);
}

export function claudeCodeRequest(sessionId: string) {
  const ephemeral = { type: "ephemeral" };
  return {
    headers: {
      "content-type": "application/json",
      "anthropic-version": "2023-06-01",
      "anthropic-beta":
        "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14",
      "anthropic-dangerous-direct-browser-access": "true",
      "x-app": "cli",
      "user-agent": "claude-cli/2.1.0 (external, cli)",
      "x-stainless-lang": "js",
      "x-stainless-retry-count": "0",
      "x-claude-code-session-id": sessionId,
      authorization: "Bearer not-checked-here",
    },
    body: {
      model: "claude-opus-4-5-20251101",
      max_tokens: 64,
      stream: true,
      temperature: 1,
      metadata: { user_id: `user_0123456789abcdef_account__session_${sessionId}` },
      system: [
        { type: "text", text: "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli" },
        { type: "text", text: "You are Claude Code, Anthropic's official CLI for Claude.", cache_control: ephemeral },
        { type: "text", text: prose(6000, 3), cache_control: { type: "ephemeral", ttl: "1h" } },
      ],
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: `<system-reminder>${prose(1500, 4)}</system-reminder>` },
            { type: "text", text: "Fix the failing test in src/parser.ts", cache_control: ephemeral },
          ],
        },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: prose(12000, 5), signature: signature(6000) },
            { type: "text", text: "Let me read the file first." },
            {
              type: "tool_use",
              id: "toolu_01A09q90qw90lq917835lq9",
              name: "Read",
              input: { path: "/repo/src/parser.ts" },
            },
          ],
        },
        {
          role: "user",
          content: [
            {
              type: "tool_result",
              tool_use_id: "toolu_01A09q90qw90lq917835lq9",
              content: [{ type: "text", text: prose(3000, 6) }],
            },
          ],
        },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: prose(12000, 8), signature: signature(6000) },
            { type: "redacted_thinking", data: signature(2000) },
            { type: "text", text: "The parser drops the last token; I will fix the loop bound." },
          ],
        },
        { role: "system", content: "The user changed src/parser.ts after your last read." },
        { role: "user", content: [{ type: "text", text: "Now run the tests.", cache_control: ephemeral }] },
      ],
      tools: TOOL_NAMES.map(tool),
      tool_choice: { type: "auto" },
      thinking: { type: "enabled", budget_tokens: 31999 },
      context_management: { edits: [{ type: "clear_thinking_20251015", keep: "all" }] },
      output_config: { effort: "high" },
    },
  };
}
