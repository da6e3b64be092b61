/**
 * Texts and conversations the tokenizer and chat-template parity tests feed to both our implementation
 * and the Python references. They aim at the places implementations differ: pre-tokenizer regex corners
 * (contractions, digit groups, whitespace runs, \r\n), Unicode normalization, characters outside the
 * learned vocabulary (byte fallback), special-token strings inside text, and every template branch.
 */
import type { ChatTemplateMessage, ChatTemplateOptions } from "../../src/model/tokenizer.js";

export const PARITY_TEXTS: string[] = [
  "",
  "Hello world",
  "The quick brown fox jumps over the lazy dog. The dog was not amused!",
  " leading space, trailing space ",
  "I'll say it's what they've done; WE'LL SEE, DON'T we? 'quoted' ''",
  "In 2024 the model answered 1,234,567 questions (about 2.5 million in 2025).",
  "3.14159265358979 12345678901234567890 0x1F 1e-9",
  "def f(x):\n    return x ** 2  # square\n\n\nprint(f(12))\n",
  '{"name": "get_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}',
  "tabs\tand\t\ttabs, CRLF\r\nline\r\n\r\nend   \n  \n",
  "   \n\n\t\t   many     spaces      and\n\n\n\nnewlines    ",
  "Café, naïve, façade, résumé, Zürich, Größe, Ångström — “quoted” ‘text’ … ©®™",
  "décomposé: e\u0301 a\u0300 n\u0303 (NFD) versus é à ñ (NFC)",
  "我们的模型可以记住对话。你好，世界！日本語のテキスト。한국어 문장입니다.",
  "Emoji 🙂👍🏽🚀 and ZWJ 👩‍💻 👨‍👩‍👧 flags 🇫🇷 and symbols ⚡️☕",
  "Rare script: ᚠᛇᚻ ꦱꦮ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 and a BOM \uFEFF inside",
  "control \u0001\u0007\u001b[31m chars \u007f and nul \u0000 end",
  "<|begin_of_text|>system<|eot_id|> <|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
  "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\nhmm\n</think>\n\n<tool_call>\n{}\n</tool_call><|im_end|>",
  "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n<bos><eos><pad><unused3>",
  "almost special: <|im_start <start_of_turn <|eot_id| <0x41> <unk> ▁ ▁▁x",
  "a".repeat(300) + " " + "ab".repeat(150),
];

export interface ParityConversation {
  name: string;
  messages: ChatTemplateMessage[];
  tools?: NonNullable<ChatTemplateOptions["tools"]>;
  extra?: Record<string, unknown>;
}

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city",
    parameters: {
      type: "object",
      properties: {
        location: { type: "string", description: "City and country, e.g. Paris, France" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      },
      required: ["location"],
    },
  },
};

const TIME_TOOL = {
  type: "function",
  function: {
    name: "get_current_time",
    description: "Get the time in a timezone — «exact»",
    parameters: { type: "object", properties: { timezone: { type: "string" } }, required: ["timezone"] },
  },
};

const weatherCall = (location: string) => ({
  id: `call_${location.length}`,
  type: "function",
  function: { name: "get_weather", arguments: { location, unit: "celsius" } },
});

export const PARITY_CONVERSATIONS: ParityConversation[] = [
  { name: "user only", messages: [{ role: "user", content: "Hello! How are you?" }] },
  {
    name: "system and user",
    messages: [
      { role: "system", content: "You are a terse assistant.  " },
      { role: "user", content: "  What is 2 + 2?\n" },
    ],
  },
  {
    name: "multi-turn",
    messages: [
      { role: "system", content: "Answer in French." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Bonjour ! Comment puis-je vous aider ?" },
      { role: "user", content: "Quel temps fait-il à Zürich ? 🙂" },
    ],
  },
  {
    name: "content parts",
    messages: [
      {
        role: "user",
        content: [
          { type: "text", text: "Part one. " },
          { type: "text", text: "Part two." },
        ],
      },
      { role: "assistant", content: "Both parts read.", tool_calls: null },
      { role: "user", content: "Thanks" },
    ],
  },
  {
    name: "tools offered",
    messages: [
      { role: "system", content: "You can use tools." },
      { role: "user", content: "What's the weather in Paris?" },
    ],
    tools: [WEATHER_TOOL, TIME_TOOL],
  },
  {
    name: "tool call and result",
    messages: [
      { role: "user", content: "What's the weather in Paris?" },
      { role: "assistant", content: null, tool_calls: [weatherCall("Paris, France")] },
      { role: "tool", tool_call_id: "call_13", content: '{"temperature": 21.5, "conditions": "sunny"}' },
    ],
    tools: [WEATHER_TOOL],
  },
  {
    name: "tool call with text and string arguments",
    messages: [
      { role: "system", content: "Use tools when needed." },
      { role: "user", content: "Weather in Oslo?" },
      {
        role: "assistant",
        content: "Let me check.",
        tool_calls: [{ type: "function", function: { name: "get_weather", arguments: '{"location": "Oslo"}' } }],
      },
      { role: "tool", content: "cloudy, 4 degrees" },
      { role: "assistant", content: "It is cloudy and 4 °C in Oslo." },
      { role: "user", content: "And tomorrow?" },
    ],
    tools: [WEATHER_TOOL],
  },
  {
    name: "parallel tool calls",
    messages: [
      { role: "user", content: "Weather in Paris and Rome?" },
      { role: "assistant", content: "", tool_calls: [weatherCall("Paris"), weatherCall("Rome")] },
      { role: "tool", content: "sunny" },
      { role: "tool", content: "rainy" },
    ],
    tools: [WEATHER_TOOL],
  },
  {
    name: "reasoning kept after the last query",
    messages: [
      { role: "user", content: "Think first: 17 * 3?" },
      { role: "assistant", content: "<think>\n17 * 3 = 51\n</think>\n\n51" },
      { role: "user", content: "And 51 * 2?" },
      { role: "assistant", reasoning_content: "51 * 2 = 102", content: "102" },
    ],
  },
  {
    name: "thinking disabled",
    messages: [{ role: "user", content: "Quick answer please." }],
    extra: { enable_thinking: false },
  },
  {
    name: "tools in the system turn, fixed date",
    messages: [
      { role: "system", content: "System prompt." },
      { role: "user", content: "Time in Tokyo?" },
    ],
    tools: [TIME_TOOL],
    extra: { tools_in_user_message: false, date_string: "01 Jan 2025" },
  },
  {
    name: "built-in tool call",
    messages: [
      { role: "user", content: "Search for the tallest tower." },
      {
        role: "assistant",
        tool_calls: [{ type: "function", function: { name: "brave_search", arguments: { query: "tallest tower" } } }],
      },
      { role: "ipython", content: '{"result": "Burj Khalifa"}' },
    ],
    extra: { builtin_tools: ["brave_search", "code_interpreter"] },
  },
  {
    name: "special-token strings in content",
    messages: [
      { role: "user", content: "Print <|eot_id|> and <|im_end|> and <end_of_turn> literally." },
      { role: "assistant", content: "<|im_start|> <start_of_turn> <|python_tag|>" },
    ],
  },
];

/**
 * Llama 2 / Mistral-style variants of a SentencePiece tokenizer.json (make-test-model writes Gemma's
 * decoder only): the decoder strips the leading space that the normalizer's "▁" prefix adds, either
 * with a final Strip or with a Metaspace decoder.
 */
export function sentencePieceVariants(tokenizer: Record<string, unknown>): Record<string, Record<string, unknown>> {
  const prefixed = {
    type: "Sequence",
    normalizers: [
      { type: "Prepend", prepend: "\u2581" },
      { type: "Replace", pattern: { String: " " }, content: "\u2581" },
    ],
  };
  const strip = {
    type: "Sequence",
    decoders: [
      { type: "Replace", pattern: { String: "\u2581" }, content: " " },
      { type: "ByteFallback" },
      { type: "Fuse" },
      { type: "Strip", content: " ", start: 1, stop: 0 },
    ],
  };
  const metaspace = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: true };
  return {
    "spm-strip": { ...tokenizer, normalizer: prefixed, pre_tokenizer: null, decoder: strip },
    "spm-metaspace": { ...tokenizer, normalizer: prefixed, pre_tokenizer: null, decoder: metaspace },
  };
}
