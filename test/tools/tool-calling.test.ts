/**
 * Tool calling end to end with the official SDKs, on random-weight fixture models of each family whose
 * tokenizer and chat template use that family's call format (Llama 3 JSON, Hermes/Qwen, Qwen3-Coder's
 * XML-style parameters, Gemma's pythonic list). With tool_choice any / required / a named tool,
 * constrained decoding makes even a random model return a well-formed call whose arguments validate against the tool's schema (checked
 * with ajv, an independent validator); streamed argument fragments add up to the final arguments; a
 * tool result continues the conversation, reading the earlier prompt from the agent's cache.
 * (String lengths are bounded in the schemas: a random model has no reason to ever close a string,
 * and max_tokens would cut the call, as it would with Anthropic's or OpenAI's API.)
 */
import Anthropic from "@anthropic-ai/sdk";
import { Ajv } from "ajv";
import OpenAI from "openai";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toolCallFormatFor } from "../../src/tools/parsers/index.js";
import { runCli, scratchDir, startServe, type ServeProcess } from "../support/cli.js";

const WEATHER_SCHEMA = {
  type: "object",
  properties: {
    city: { type: "string", description: "City name", maxLength: 16 },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
    days: { type: "integer", minimum: 1, maximum: 7 },
  },
  required: ["city", "unit"],
  additionalProperties: false,
};
const TIME_SCHEMA = {
  type: "object",
  properties: { timezone: { type: "string", maxLength: 12 }, precise: { type: "boolean" } },
  required: ["timezone", "precise"],
};
const anthropicTools: Anthropic.Tool[] = [
  {
    name: "get_weather",
    description: "Weather for a city",
    input_schema: WEATHER_SCHEMA as Anthropic.Tool.InputSchema,
  },
  {
    name: "get_time",
    description: "Current time in a timezone",
    input_schema: TIME_SCHEMA as Anthropic.Tool.InputSchema,
  },
];
const openaiTools: OpenAI.ChatCompletionTool[] = [
  {
    type: "function",
    function: { name: "get_weather", description: "Weather for a city", parameters: WEATHER_SCHEMA },
  },
  { type: "function", function: { name: "get_time", description: "Current time", parameters: TIME_SCHEMA } },
];
const ajv = new Ajv({ strict: false });
const validators = { get_weather: ajv.compile(WEATHER_SCHEMA), get_time: ajv.compile(TIME_SCHEMA) };
const expectValidCall = (name: string, input: unknown) => {
  expect(Object.keys(validators)).toContain(name);
  const validate = validators[name as keyof typeof validators];
  expect(validate(input), JSON.stringify(validate.errors)).toBe(true);
};

const FIXTURES = [
  { name: "llama", flags: ["--arch", "llama"], format: "llama3_json" },
  { name: "qwen3", flags: ["--arch", "qwen3"], format: "hermes" },
  { name: "qwen3_coder", flags: ["--arch", "qwen3", "--template", "qwen3_coder"], format: "qwen3_coder" },
  { name: "gemma3_text", flags: ["--arch", "gemma3_text"], format: "gemma_pythonic" },
] as const;

for (const { name: arch, flags, format } of FIXTURES) {
  describe(`tool calling on a ${arch} fixture`, () => {
    let server: ServeProcess;
    let anthropic: Anthropic;
    let openai: OpenAI;
    let model: string;

    beforeAll(async () => {
      model = join(scratchDir("agent-memory-tools-"), arch);
      const made = await runCli(["make-test-model", ...flags, "--out", model]);
      expect(made.code, made.stderr).toBe(0);
      server = await startServe(["--model", model], { env: { SEMANTIC_MLX_DEFAULT_TEMPERATURE: "1" } });
      anthropic = new Anthropic({ baseURL: server.url, apiKey: "unused", maxRetries: 0 });
      openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
      // Generating the model and starting a server beside the rest of the suite on two cores.
    }, 120_000);
    afterAll(async () => {
      server?.child.kill("SIGTERM");
      await server?.exited;
    });

    it(`writes calls in the ${format} format`, async () => {
      const config = JSON.parse(await readFile(join(model, "tokenizer_config.json"), "utf8")) as {
        chat_template: string;
      };
      const { model_type: modelType } = JSON.parse(await readFile(join(model, "config.json"), "utf8")) as {
        model_type: string;
      };
      expect(toolCallFormatFor(modelType, config.chat_template)).toBe(format);
    });

    it("tool_choice any: a valid call, streamed as input_json_delta, then stop_reason tool_use", async () => {
      const request = {
        model: "local",
        max_tokens: 200,
        tools: anthropicTools,
        tool_choice: { type: "any" as const },
        messages: [{ role: "user" as const, content: "What's the weather in Paris?" }],
      };
      const message = await anthropic.messages.create(request);
      expect(message.stop_reason).toBe("tool_use");
      const calls = message.content.filter((block) => block.type === "tool_use");
      expect(calls).toHaveLength(1);
      expect(calls[0]!.id).toMatch(/^toolu_[0-9A-Za-z]{24}$/);
      expectValidCall(calls[0]!.name, calls[0]!.input);

      const stream = anthropic.messages.stream(request);
      let json = "";
      for await (const event of stream) {
        if (event.type === "content_block_delta" && event.delta.type === "input_json_delta")
          json += event.delta.partial_json;
        if (event.type === "content_block_delta") expect(event.delta.type).toBe("input_json_delta");
      }
      const final = await stream.finalMessage();
      const streamedCall = final.content.find((block) => block.type === "tool_use")!;
      expect(JSON.parse(json)).toEqual(streamedCall.input);
      expectValidCall(streamedCall.name, streamedCall.input);
      expect(final.stop_reason).toBe("tool_use");
    });

    it("a named tool is the one called, with valid arguments", async () => {
      for (let attempt = 0; attempt < 3; attempt++) {
        const message = await anthropic.messages.create({
          model: "local",
          max_tokens: 200,
          tools: anthropicTools,
          tool_choice: { type: "tool", name: "get_time" },
          messages: [{ role: "user", content: `What time is it? (${attempt})` }],
        });
        const call = message.content.find((block) => block.type === "tool_use")!;
        expect(call.name).toBe("get_time");
        expectValidCall(call.name, call.input);
      }
    });

    it("OpenAI tool_choice required: tool_calls deltas with an id, arguments that add up and validate", async () => {
      const request = {
        model: "local",
        max_tokens: 200,
        tools: openaiTools,
        tool_choice: "required" as const,
        messages: [{ role: "user" as const, content: "Weather in Oslo, please." }],
      };
      const completion = await openai.chat.completions.create(request);
      const choice = completion.choices[0]!;
      expect(choice.finish_reason).toBe("tool_calls");
      const [call] = choice.message.tool_calls!;
      expect(call!.id).toMatch(/^call_/);
      if (call!.type !== "function") throw new Error("expected a function call");
      expectValidCall(call!.function.name, JSON.parse(call!.function.arguments));

      const stream = await openai.chat.completions.create({ ...request, stream: true });
      let name = "";
      let args = "";
      let finish: string | null = null;
      for await (const chunk of stream) {
        for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
          if (delta.id) expect(delta.id).toMatch(/^call_/);
          name += delta.function?.name ?? "";
          args += delta.function?.arguments ?? "";
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      expect(finish).toBe("tool_calls");
      expectValidCall(name, JSON.parse(args));
    });

    it("a tool result continues the conversation, reading the earlier prompt from the agent's cache", async () => {
      const session = { headers: { "x-session-id": `tools-${arch}` } };
      const first = await anthropic.messages.create(
        {
          model: "local",
          max_tokens: 200,
          tools: anthropicTools,
          tool_choice: { type: "any" },
          messages: [{ role: "user", content: "Weather in Rome?" }],
        },
        session,
      );
      const call = first.content.find((block) => block.type === "tool_use")!;
      const firstPrompt = first.usage.cache_creation_input_tokens! + first.usage.cache_read_input_tokens!;
      const second = await anthropic.messages.create(
        {
          model: "local",
          max_tokens: 8,
          tools: anthropicTools,
          messages: [
            { role: "user", content: "Weather in Rome?" },
            { role: "assistant", content: first.content },
            { role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: "22 degrees, sunny" }] },
          ],
        },
        session,
      );
      expect(second.usage.cache_read_input_tokens).toBeGreaterThanOrEqual(firstPrompt);
    });

    it("response_format json_schema: the reply is JSON valid for the schema", async () => {
      const completion = await openai.chat.completions.create({
        model: "local",
        max_tokens: 200,
        messages: [{ role: "user", content: "Describe the weather as JSON." }],
        response_format: { type: "json_schema", json_schema: { name: "weather", schema: WEATHER_SCHEMA } },
      });
      const content = completion.choices[0]!.message.content!;
      expect(validators.get_weather(JSON.parse(content))).toBe(true);
      // json_object: any object. A random model need not ever close a free-form string, so the reply may be
      // cut by max_tokens (finish_reason length); whatever ends on its own is a JSON object.
      const object = await openai.chat.completions.create({
        model: "local",
        max_tokens: 200,
        seed: 3,
        messages: [{ role: "user", content: "Any JSON object." }],
        response_format: { type: "json_object" },
      });
      const reply = object.choices[0]!;
      expect(reply.message.content!.startsWith("{")).toBe(true);
      if (reply.finish_reason === "stop") {
        const parsed: unknown = JSON.parse(reply.message.content!);
        expect(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)).toBe(true);
      } else expect(reply.finish_reason).toBe("length");
    });

    it("refuses duplicate tool names and unsupported schema keywords with a 400 naming them", async () => {
      const duplicate = await anthropic.messages
        .create({
          model: "local",
          max_tokens: 8,
          tools: [anthropicTools[0]!, anthropicTools[0]!],
          messages: [{ role: "user", content: "Hi" }],
        })
        .catch((error: unknown) => error);
      expect(duplicate).toBeInstanceOf(Anthropic.BadRequestError);
      expect((duplicate as Error).message).toMatch(/duplicate tool name/);
      const unsupported = await openai.chat.completions
        .create({
          model: "local",
          max_tokens: 8,
          tools: [
            {
              type: "function",
              function: {
                name: "odd",
                parameters: {
                  type: "object",
                  properties: { x: { type: "string", not: { const: "a" } } },
                  required: ["x"],
                },
              },
            },
          ],
          tool_choice: "required",
          messages: [{ role: "user", content: "Hi" }],
        })
        .catch((error: unknown) => error);
      expect(unsupported).toBeInstanceOf(OpenAI.BadRequestError);
      expect((unsupported as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("tools");
      expect((unsupported as Error).message).toMatch(/"not"/);
    });
  });
}
