/**
 * Streaming tool-call parsers on hand-written model outputs, per format. Each output is fed whole, one
 * UTF-16 unit at a time and in random chunks; the events, normalized (adjacent text merged, argument
 * fragments joined), must be the same every way and equal to the calls written out by hand.
 */
import { Template } from "@huggingface/jinja";
import { describe, expect, test } from "vitest";
import { chatTemplateFor } from "../../src/model/test-model/chat-templates.js";
import type { TokenizerFamily } from "../../src/model/test-model/tokenizer.js";
import {
  createToolCallParser,
  toolCallFormatFor,
  type ToolCallFormat,
  type ToolParseEvent,
  type ToolSpec,
} from "../../src/tools/parsers/index.js";

const TOOLS: ToolSpec[] = [
  {
    name: "get_weather",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, days: { type: "integer" }, units: { type: "string", enum: ["c", "f"] } },
      required: ["city"],
    },
  },
  { name: "get_time", parameters: { type: "object", properties: { timezone: { type: "string" } } } },
  {
    name: "search",
    parameters: {
      type: "object",
      properties: {
        query: { type: "string" },
        filters: { type: "object" },
        limit: { type: "integer" },
        exact: { type: "boolean" },
        tags: { type: "array", items: { type: "string" } },
        note: { type: ["string", "null"] },
      },
    },
  },
];

type Outcome = { text: string } | { call: string; args: Record<string, unknown> };
type Mode = "auto" | "stream";

interface Case {
  name: string;
  output: string;
  expected: Outcome[];
  /** Streaming mode trusts the grammar, so some cases about broken or unknown calls are for auto mode only. */
  modes?: Mode[];
  /** The text holds markup on purpose (a broken call next to a valid one). */
  markupInText?: true;
}

/** Markup that must never show up in the text of an output whose calls are all valid. */
const MARKUP: Record<ToolCallFormat, RegExp> = {
  hermes: /<\/?tool_call>/,
  qwen3_coder: /<\/?tool_call>|<\/?function|<\/?parameter/,
  llama3_json: /<\|python_tag\|>|\{\s*"name"/,
  gemma_pythonic: /\[\s*[\w.-]+\(/,
};

function parser(format: ToolCallFormat, mode: Mode) {
  return createToolCallParser(format, { tools: TOOLS, streamArguments: mode === "stream" });
}

function mulberry32(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function chunkings(output: string): Array<{ how: string; chunks: string[] }> {
  const ways = [
    { how: "whole", chunks: [output] },
    { how: "one unit at a time", chunks: output.split("") },
  ];
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const random = mulberry32(seed);
    const chunks: string[] = [];
    for (let at = 0; at < output.length;) {
      const size = 1 + Math.floor(random() * 9);
      chunks.push(output.slice(at, at + size));
      at += size;
    }
    ways.push({ how: `random chunks, seed ${seed}`, chunks });
  }
  return ways;
}

function parse(format: ToolCallFormat, mode: Mode, chunks: readonly string[]): ToolParseEvent[] {
  const instance = parser(format, mode);
  const events = chunks.flatMap((chunk) => instance.push(chunk));
  return [...events, ...instance.finish()];
}

/** Checks the event contract and returns the outcome: text merged, each call's fragments joined. */
function normalize(events: readonly ToolParseEvent[]): Outcome[] {
  const outcomes: Outcome[] = [];
  let open: { index: number; name: string; fragments: string } | null = null;
  let nextIndex = 0;
  for (const event of events) {
    if (event.type === "text") {
      expect(open, "text inside a call").toBeNull();
      expect(event.text).not.toBe("");
      const last = outcomes[outcomes.length - 1];
      if (last && "text" in last) last.text += event.text;
      else outcomes.push({ text: event.text });
    } else if (event.type === "tool_call_start") {
      expect(open, "a start inside a call").toBeNull();
      expect(event.index).toBe(nextIndex);
      open = { index: event.index, name: event.name, fragments: "" };
    } else if (event.type === "tool_call_arguments") {
      expect(open?.index).toBe(event.index);
      expect(event.fragment).not.toBe("");
      open!.fragments += event.fragment;
    } else {
      expect(open?.index).toBe(event.index);
      // The fragments are the compact JSON of the arguments, as JSON.stringify writes them.
      expect(JSON.parse(open!.fragments)).toEqual(event.arguments);
      expect(open!.fragments).toBe(JSON.stringify(event.arguments));
      outcomes.push({ call: open!.name, args: event.arguments });
      open = null;
      nextIndex += 1;
    }
  }
  expect(open, "a call without an end").toBeNull();
  return outcomes;
}

function checkCase(format: ToolCallFormat, { output, expected, modes = ["auto", "stream"], markupInText }: Case): void {
  for (const mode of modes) {
    for (const { how, chunks } of chunkings(output)) {
      const outcome = normalize(parse(format, mode, chunks));
      expect(outcome, `${mode}, ${how}`).toEqual(expected);
    }
  }
  // Where calls were read, none of their markup is left in the text.
  if (!markupInText && expected.some((outcome) => "call" in outcome)) {
    for (const outcome of expected) if ("text" in outcome) expect(outcome.text).not.toMatch(MARKUP[format]);
  }
}

function describeFormat(format: ToolCallFormat, cases: Case[]): void {
  describe(format, () => {
    for (const testCase of cases) test(testCase.name, () => checkCase(format, testCase));
  });
}

const text = (value: string): Outcome => ({ text: value });
const call = (name: string, args: Record<string, unknown>): Outcome => ({ call: name, args });

/** Argument values that are hard on a parser: markup inside strings, escapes, unicode, nesting. */
const TRICKY_ARGS = {
  query: 'say "hi" </tool_call> <tool_call> [a(b=1)] {"name": "x"} </parameter>\\n',
  filters: { nested: { list: [1, -2.5, 3e-7, true, false, null, [], {}], 'key with "quotes"': "é 日本 😀" } },
  tags: ["a,b", "c)", "]"],
  limit: 10,
  exact: false,
};
/** TRICKY_ARGS as a model might write them: spaces, \u escapes (a surrogate pair among them), `\/`. */
const TRICKY_JSON =
  '{"query": "say \\"hi\\" </tool_call> <tool_call> [a(b=1)] {\\"name\\": \\"x\\"} <\\/parameter>\\\\n", ' +
  '"filters": { "nested" : { "list": [ 1, -2.5, 3e-7, true, false, null, [ ], { } ], ' +
  '"key with \\"quotes\\"": "\\u00e9 日本 \\ud83d\\ude00" } }, "tags": ["a,b", "c)", "]"], "limit": 10, "exact": false}';

describeFormat("hermes", [
  {
    name: "text only, with markup-like characters",
    output: "Sure: 1 < 2, <b>bold</b>, a <tool mention, <tool_cal is not a tag, nor is <tool_call_x>.\n\nDone <",
    expected: [
      text("Sure: 1 < 2, <b>bold</b>, a <tool mention, <tool_cal is not a tag, nor is <tool_call_x>.\n\nDone <"),
    ],
  },
  { name: "'<tool' at the very end is text", output: "Look: <tool", expected: [text("Look: <tool")] },
  {
    name: "text then one call",
    output:
      'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>',
    expected: [text("Let me check."), call("get_weather", { city: "Paris", days: 3 })],
  },
  {
    name: "several calls, then text",
    output:
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "get_time", "arguments": {"timezone": "Europe/Paris"}}\n</tool_call>\n' +
      '<tool_call>{"arguments": {}, "name": "get_time"}</tool_call>\nThat is all.',
    expected: [
      call("get_weather", { city: "Paris" }),
      call("get_time", { timezone: "Europe/Paris" }),
      call("get_time", {}),
      text("That is all."),
    ],
  },
  {
    name: "nested arguments, escapes, unicode and markup inside strings",
    output: `<tool_call>\n{"name": "search", "arguments": ${TRICKY_JSON}}\n</tool_call>`,
    expected: [call("search", TRICKY_ARGS)],
  },
  {
    name: "a call without arguments, and other keys, are read",
    output: '<tool_call>\n{"name": "get_time", "id": 7}\n</tool_call>',
    expected: [call("get_time", {})],
  },
  {
    name: "a closing tag that never came still ends a whole call",
    output: 'On it.\n<tool_call>\n{"name": "get_time", "arguments": {"timezone": "UTC"}}\n</tool_',
    expected: [text("On it."), call("get_time", { timezone: "UTC" })],
  },
  {
    name: "a malformed call is text, and the valid call after it is still read",
    output:
      'A\n<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}\n</tool_call>\n' +
      '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
    expected: [
      text(
        'A\n<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>\n' +
          '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}\n</tool_call>',
      ),
      call("get_time", {}),
    ],
    modes: ["auto"],
    markupInText: true,
  },
  {
    name: "arguments that are not an object make the call text",
    output: '<tool_call>\n{"name": "get_time", "arguments": "UTC"}\n</tool_call>',
    expected: [text('<tool_call>\n{"name": "get_time", "arguments": "UTC"}\n</tool_call>')],
    modes: ["auto"],
  },
  {
    name: "an unknown tool is text",
    output: 'Hmm.\n<tool_call>\n{"name": "launch_rockets", "arguments": {"count": 3}}\n</tool_call>',
    expected: [text('Hmm.\n<tool_call>\n{"name": "launch_rockets", "arguments": {"count": 3}}\n</tool_call>')],
  },
  {
    name: "an unterminated call is text",
    output: 'Wait <tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',
    expected: [text('Wait <tool_call>\n{"name": "get_weather", "arguments": {"city": "Par')],
    modes: ["auto"],
  },
  {
    name: "a tag followed by prose is text",
    output: "Write <tool_call> tags around calls.",
    expected: [text("Write <tool_call> tags around calls.")],
  },
]);

describeFormat("qwen3_coder", [
  {
    name: "text only, with markup-like characters",
    output: "Use <function> and <parameter> in XML; <tool_cal is cut, <tool_call>x is not a call. <",
    expected: [text("Use <function> and <parameter> in XML; <tool_cal is cut, <tool_call>x is not a call. <")],
  },
  {
    name: "text then one call, typed by the schema",
    output:
      "I'll check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n" +
      "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
    expected: [text("I'll check."), call("get_weather", { city: "New York", days: 3 })],
  },
  {
    name: "several calls; values typed or kept as strings",
    output:
      "<tool_call>\n<function=search>\n<parameter=query>\n42\n</parameter>\n<parameter=limit>\n5\n</parameter>\n" +
      '<parameter=exact>\ntrue\n</parameter>\n<parameter=filters>\n{"lang": "en", "years": [2020, 2021]}\n</parameter>\n' +
      '<parameter=tags>\n["x", "y"]\n</parameter>\n<parameter=note>\nnull\n</parameter>\n</function>\n</tool_call>\n' +
      "<tool_call>\n<function=get_time>\n</function>\n</tool_call>\n" +
      "<tool_call><function=get_weather><parameter=city>Oslo</parameter><parameter=days>soon</parameter></function></tool_call>",
    expected: [
      call("search", {
        query: "42",
        limit: 5,
        exact: true,
        filters: { lang: "en", years: [2020, 2021] },
        tags: ["x", "y"],
        note: "null",
      }),
      call("get_time", {}),
      call("get_weather", { city: "Oslo", days: "soon" }),
    ],
  },
  {
    name: "multi-line string values keep their content: quotes, markup, unicode, blank lines",
    output:
      "<tool_call>\n<function=search>\n<parameter=query>\n\ndef f():\n    return \"<tool_call>\" + '</para' # é 日本 😀\n\n" +
      '</parameter>\n<parameter=filters>\n{"a": {"b": [1, {"c": "</function>"}]}}\n</parameter>\n</function>\n</tool_call>',
    expected: [
      call("search", {
        query: "\ndef f():\n    return \"<tool_call>\" + '</para' # é 日本 😀\n",
        filters: { a: { b: [1, { c: "</function>" }] } },
      }),
    ],
  },
  {
    name: "a malformed call is text",
    output: "X\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</tool_call>",
    expected: [text("X\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</tool_call>")],
    modes: ["auto"],
  },
  {
    name: "an unknown tool is text",
    output: "<tool_call>\n<function=rm_rf>\n<parameter=path>\n/\n</parameter>\n</function>\n</tool_call>",
    expected: [text("<tool_call>\n<function=rm_rf>\n<parameter=path>\n/\n</parameter>\n</function>\n</tool_call>")],
  },
  {
    name: "a repeated parameter is text",
    output:
      "<tool_call>\n<function=get_time>\n<parameter=timezone>\nA\n</parameter>\n<parameter=timezone>\nB\n</parameter>\n</function>\n</tool_call>",
    expected: [
      text(
        "<tool_call>\n<function=get_time>\n<parameter=timezone>\nA\n</parameter>\n<parameter=timezone>\nB\n</parameter>\n</function>\n</tool_call>",
      ),
    ],
    modes: ["auto"],
  },
]);

describeFormat("llama3_json", [
  {
    name: "text only, even with JSON later in it",
    output: 'The answer is {"name": "get_time", "parameters": {}} and that is not a call.',
    expected: [text('The answer is {"name": "get_time", "parameters": {}} and that is not a call.')],
  },
  {
    name: "a reply that is JSON but not a call is text",
    output: '  {"result": 42, "name": "x"}\n{"name": "get_time", "parameters": {}}',
    expected: [text('  {"result": 42, "name": "x"}\n{"name": "get_time", "parameters": {}}')],
  },
  { name: "'<|python_ta' at the end is text", output: "<|python_ta", expected: [text("<|python_ta")] },
  {
    name: "one call, as the template writes it",
    output: '{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}',
    expected: [call("get_weather", { city: "Paris", days: 3 })],
  },
  {
    name: "several calls after <|python_tag|>, separated by ; and newlines, with 'arguments' and 'type'",
    output:
      '\n<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"type": "function", "name": "get_time", "arguments": {}}\n' +
      '{"name": "get_time", "parameters": {"timezone": "UTC"}};',
    expected: [call("get_weather", { city: "Paris" }), call("get_time", {}), call("get_time", { timezone: "UTC" })],
  },
  {
    name: "nested arguments, escapes, unicode and markup inside strings",
    output: `{"name": "search", "parameters": ${TRICKY_JSON}}`,
    expected: [call("search", TRICKY_ARGS)],
  },
  {
    name: "text after the calls",
    output: '{"name": "get_time", "parameters": {}}\n\nI asked for the time.',
    expected: [call("get_time", {}), text("I asked for the time.")],
  },
  {
    name: "a malformed call is text",
    output: '{"name": "get_weather", "parameters": {"city": }}',
    expected: [text('{"name": "get_weather", "parameters": {"city": }}')],
    modes: ["auto"],
  },
  {
    name: "an unknown tool is text, and a valid call after it is read",
    output: '{"name": "launch", "parameters": {"n": 1}}\n{"name": "get_time", "parameters": {}}',
    expected: [text('{"name": "launch", "parameters": {"n": 1}}'), call("get_time", {})],
    modes: ["auto"],
    markupInText: true,
  },
  {
    name: "a built-in tool call is text",
    output: '<|python_tag|>brave_search.call(query="weather")',
    expected: [text('<|python_tag|>brave_search.call(query="weather")')],
  },
]);

describeFormat("gemma_pythonic", [
  {
    name: "brackets in prose are text",
    output: "See [1], [link](https://x.y), [f(x)], [ ], [], [a(b=)], a[i] and [x",
    expected: [text("See [1], [link](https://x.y), [f(x)], [ ], [], [a(b=)], a[i] and [x")],
  },
  { name: "'[' at the very end is text", output: "Lists look like [", expected: [text("Lists look like [")] },
  {
    name: "text then one call",
    output: 'I will check.\n[get_weather(city="Paris", days=3)]',
    expected: [text("I will check."), call("get_weather", { city: "Paris", days: 3 })],
  },
  {
    name: "several calls in one list",
    output: '[get_weather(city="Paris"), get_time(), get_time( timezone = "UTC" , )]\nDone.',
    expected: [
      call("get_weather", { city: "Paris" }),
      call("get_time", {}),
      call("get_time", { timezone: "UTC" }),
      text("Done."),
    ],
  },
  {
    name: "nested JSON values, escapes, unicode and brackets inside strings",
    output:
      '[search(query="say \\"hi\\" </tool_call> <tool_call> [a(b=1)] {\\"name\\": \\"x\\"} <\\/parameter>\\\\n", ' +
      'filters={"nested": {"list": [1, -2.5, 3e-7, true, false, null, [], {}], "key with \\"quotes\\"": "\\u00e9 日本 \\ud83d\\ude00"}}, ' +
      'tags=["a,b", "c)", "]"], limit=10, exact=false)]',
    expected: [call("search", TRICKY_ARGS)],
  },
  {
    name: "a list whose ']' never came still ends its whole calls",
    output: 'Checking.\n[get_time(timezone="UTC")',
    expected: [text("Checking."), call("get_time", { timezone: "UTC" })],
  },
  {
    name: "Python literals are not JSON: the list is text",
    output: "[search(exact=True)]",
    expected: [text("[search(exact=True)]")],
    modes: ["auto"],
  },
  {
    name: "one unknown tool makes the whole list text",
    output: 'Ok [get_time(), fly(to="moon")] then',
    expected: [text('Ok [get_time(), fly(to="moon")] then')],
    modes: ["auto"],
  },
  {
    name: "streaming: a later call to an unknown tool is text from its name on",
    output: 'Ok [get_time(), fly(to="moon")] then',
    expected: [text("Ok"), call("get_time", {}), text('fly(to="moon")] then')],
    modes: ["stream"],
  },
  {
    name: "an unterminated call is text",
    output: '[get_weather(city="Par',
    expected: [text('[get_weather(city="Par')],
    modes: ["auto"],
  },
]);

describe("timing", () => {
  const calls: Record<ToolCallFormat, { output: string; nameKnownAt: string }> = {
    hermes: {
      output: 'Hi.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>',
      nameKnownAt: '"get_weather"',
    },
    qwen3_coder: {
      output:
        "Hi.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
      nameKnownAt: "<function=get_weather>",
    },
    llama3_json: {
      output: '{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}',
      nameKnownAt: '"get_weather"',
    },
    gemma_pythonic: { output: 'Hi.\n[get_weather(city="Paris", days=3)]', nameKnownAt: "get_weather(" },
  };

  for (const [format, { output, nameKnownAt }] of Object.entries(calls) as Array<
    [ToolCallFormat, (typeof calls)["hermes"]]
  >) {
    test(`${format}: streaming mode emits the start once the name is read, then arguments as they come`, () => {
      const instance = parser(format, "stream");
      const nameEnd = output.indexOf(nameKnownAt) + nameKnownAt.length;
      const before = instance.push(output.slice(0, nameEnd - 1));
      expect(before.some((event) => event.type === "tool_call_start")).toBe(false);
      const atName = instance.push(output.slice(nameEnd - 1, nameEnd));
      expect(atName).toContainEqual({ type: "tool_call_start", index: 0, name: "get_weather" });
      const cityEnd = output.indexOf("Paris") + 2;
      const partial = instance.push(output.slice(nameEnd, cityEnd));
      const fragments = partial.filter((event) => event.type === "tool_call_arguments");
      expect(fragments.map((event) => event.fragment).join("")).toMatch(/"city":"Pa$/);
      const rest = [...instance.push(output.slice(cityEnd)), ...instance.finish()];
      expect(rest[rest.length - 1]).toEqual({
        type: "tool_call_end",
        index: 0,
        arguments: { city: "Paris", days: 3 },
      });
    });

    test(`${format}: auto mode holds a call until it is whole, but not the text before it`, () => {
      const instance = parser(format, "auto");
      const held = instance.push(output.slice(0, -1));
      expect(held.filter((event) => event.type !== "text")).toEqual([]);
      if (output.startsWith("Hi.")) expect(held).toEqual([{ type: "text", text: "Hi." }]);
      const whole = [...instance.push(output.slice(-1)), ...instance.finish()];
      expect(normalize(whole)).toEqual([call("get_weather", { city: "Paris", days: 3 })]);
    });

    test(`${format}: streaming mode closes a call cut off mid-string with what was read`, () => {
      const cut = output.slice(0, output.indexOf("Paris") + 2);
      const outcome = normalize(parse(format, "stream", cut.split("")));
      expect(outcome[outcome.length - 1]).toEqual(call("get_weather", { city: "Pa" }));
    });
  }

  test("text is held back only while it may still be markup", () => {
    const instance = parser("hermes", "auto");
    expect(instance.push("Hello wor")).toEqual([{ type: "text", text: "Hello wor" }]);
    expect(instance.push("ld \n<tool")).toEqual([{ type: "text", text: "ld" }]);
    expect(instance.push("s>")).toEqual([{ type: "text", text: " \n<tools>" }]);
    expect(instance.finish()).toEqual([]);
  });

  test("streaming mode ends an open call at a cut inside a nested value", () => {
    const outcome = normalize(
      parse("hermes", "stream", ['<tool_call>{"name": "search", "arguments": {"filters": {"a": [1, {"b": tr']),
    );
    expect(outcome).toEqual([call("search", { filters: { a: [1, { b: null }] } })]);
  });
});

describe("reading what each family's template writes for past calls", () => {
  const FAMILIES: Record<TokenizerFamily, { header: string; end: string; format: ToolCallFormat }> = {
    llama: { header: "<|start_header_id|>assistant<|end_header_id|>\n\n", end: "<|eot_id|>", format: "llama3_json" },
    qwen2: { header: "<|im_start|>assistant", end: "<|im_end|>", format: "hermes" },
    qwen3: { header: "<|im_start|>assistant\n", end: "<|im_end|>", format: "hermes" },
    gemma3: { header: "<start_of_turn>model\n", end: "<end_of_turn>", format: "gemma_pythonic" },
  };
  const ARGS = { query: 'a "quoted" </tool_call> [x] é 日本', filters: { deep: [1, { b: null, c: true }] }, limit: 3 };

  for (const [family, { header, end, format }] of Object.entries(FAMILIES) as Array<
    [TokenizerFamily, (typeof FAMILIES)["llama"]]
  >) {
    test(`${family} → ${format}`, () => {
      const template = chatTemplateFor(family);
      expect(toolCallFormatFor(family, template)).toBe(format);
      const single = family === "llama";
      const calls = single
        ? [{ type: "function", function: { name: "search", arguments: ARGS } }]
        : [
            { type: "function", function: { name: "search", arguments: ARGS } },
            { type: "function", function: { name: "get_time", arguments: {} } },
          ];
      const rendered = new Template(template).render({
        messages: [
          { role: "user", content: "Look it up." },
          { role: "assistant", content: single ? "" : "Let me look.", tool_calls: calls },
          { role: "tool", content: "found" },
        ],
        tools: TOOLS.map((tool) => ({ type: "function", function: tool })),
        bos_token: "<bos>",
        add_generation_prompt: false,
      });
      const start = rendered.lastIndexOf(header) + header.length;
      const assistantTurn = rendered.slice(start, rendered.indexOf(end, start)).replace(/^\n/, "");
      const expected = single
        ? [call("search", ARGS)]
        : [text("Let me look."), call("search", ARGS), call("get_time", {})];
      checkCase(format, { name: family, output: assistantTurn, expected });
    });
  }
});

describe("toolCallFormatFor", () => {
  test("the template decides first, then the family", () => {
    const coder = "{{- '<tool_call>\\n<function=' + name + '>\\n' }}{{- '<parameter=' + key + '>\\n' }}";
    expect(toolCallFormatFor("qwen3_moe", coder)).toBe("qwen3_coder");
    expect(toolCallFormatFor("llama", "{{ '<tool_call>' }}")).toBe("hermes");
    expect(toolCallFormatFor("qwen2", "{{ '<|im_start|>' + message.content }}")).toBeNull();
    expect(toolCallFormatFor("gemma3_text", "{{ '<start_of_turn>' }}")).toBe("gemma_pythonic");
    expect(toolCallFormatFor("gemma3", null)).toBe("gemma_pythonic");
    expect(toolCallFormatFor("qwen3", null)).toBe("hermes");
    expect(toolCallFormatFor("qwen2", null)).toBe("hermes");
    expect(toolCallFormatFor("llama", null)).toBe("llama3_json");
    expect(toolCallFormatFor("mistral", null)).toBeNull();
  });
});
