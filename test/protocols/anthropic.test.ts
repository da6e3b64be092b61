/**
 * The Anthropic Messages API end to end: the real `agent-memory serve` process on the tiny fixture
 * model, driven by the official @anthropic-ai/sdk client exactly as applications drive Anthropic's
 * own API. Greedy decoding (the server's default temperature set to 0) makes every answer reproducible, so the streamed and
 * non-streamed paths, and a stop sequence, can be checked against an earlier answer.
 */
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServe, type ServeProcess } from "../support/cli.js";

const MODEL = "local-claude";
let server: ServeProcess;
let client: Anthropic;

beforeAll(async () => {
  // Greedy by default (SEMANTIC_MLX_DEFAULT_TEMPERATURE): the SDK no longer offers `temperature`,
  // which Anthropic's API deprecated; the server still accepts it from clients that send it.
  server = await startServe([], {
    env: { SEMANTIC_MODEL_ALIASES: "local-claude,local-claude-small", SEMANTIC_MLX_DEFAULT_TEMPERATURE: "0" },
  });
  client = new Anthropic({ baseURL: server.url, apiKey: "unused", maxRetries: 0 });
});

afterAll(async () => {
  server?.child.kill("SIGTERM");
  await server?.exited;
});

const question = (text: string): Anthropic.MessageCreateParamsNonStreaming => ({
  model: MODEL,
  max_tokens: 24,
  messages: [{ role: "user", content: text }],
});

describe("POST /v1/messages through the Anthropic SDK", () => {
  it("answers a Message in Anthropic's shape, echoing the requested model name", async () => {
    const message = await client.messages.create(question("Tell me about the weather today."));
    expect(message.id).toMatch(/^msg_[0-9A-Za-z]{24}$/);
    expect(message).toMatchObject({ type: "message", role: "assistant", model: MODEL, stop_sequence: null });
    expect(message.stop_reason).toBe("max_tokens");
    expect(message.content).toHaveLength(1);
    expect(message.content[0]!.type).toBe("text");
    expect((message.content[0] as Anthropic.TextBlock).text.length).toBeGreaterThan(0);
    expect(message.usage.output_tokens).toBe(24);
    const { input_tokens, cache_creation_input_tokens, cache_read_input_tokens } = message.usage;
    // No session: nothing is kept for an agent, so every prompt token is plain input.
    expect(cache_creation_input_tokens).toBe(0);
    expect(input_tokens + cache_read_input_tokens!).toBeGreaterThan(5);
  });

  it("streams the same answer as the non-streamed call, in Anthropic's event order", async () => {
    const request = question("Write a short poem about the sea.");
    const whole = await client.messages.create(request);
    const stream = client.messages.stream(request);
    const types: string[] = [];
    let streamed = "";
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "content_block_delta" && event.delta.type === "text_delta") streamed += event.delta.text;
    }
    const final = await stream.finalMessage();
    expect(types[0]).toBe("message_start");
    expect(types[1]).toBe("content_block_start");
    expect(types.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
    expect(new Set(types.slice(2, -3))).toEqual(new Set(["content_block_delta"]));
    expect(streamed).toBe((whole.content[0] as Anthropic.TextBlock).text);
    expect(final.content).toEqual(whole.content);
    expect(final.stop_reason).toBe("max_tokens");
    expect(final.usage.output_tokens).toBe(24);
  });

  it("reads more of the conversation from the session's cache every turn", async () => {
    const session = { headers: { "x-session-id": `anthropic-multi-turn-${Date.now()}` } };
    const messages: Anthropic.MessageParam[] = [];
    const reads: number[] = [];
    const promptSizes: number[] = [];
    for (const text of ["Hello, who are you?", "What can you do for me?", "Summarize our chat."]) {
      messages.push({ role: "user", content: text });
      const request = { ...question(""), system: "You are a helpful assistant.", messages: [...messages] };
      const counted = await client.messages.countTokens({ model: MODEL, system: request.system, messages });
      const reply = await client.messages.create(request, session);
      const usage = reply.usage;
      // The three input counts add up to the prompt, as with Anthropic's prompt caching.
      expect(usage.input_tokens + usage.cache_creation_input_tokens! + usage.cache_read_input_tokens!).toBe(
        counted.input_tokens,
      );
      // With a session every newly prefilled token is kept for the next turn.
      expect(usage.input_tokens).toBe(0);
      reads.push(usage.cache_read_input_tokens!);
      const previousPrompt = reads.length > 1 ? promptSizes.at(-1)! : 0;
      // Everything the previous turn's prompt held is read back from memory, not prefilled again.
      expect(usage.cache_read_input_tokens!).toBeGreaterThanOrEqual(previousPrompt);
      promptSizes.push(counted.input_tokens);
      messages.push({ role: "assistant", content: reply.content });
    }
    // The first turn may already read the template's leading blocks, shared by every request.
    expect(reads[1]).toBeGreaterThan(reads[0]!);
    expect(reads[2]).toBeGreaterThan(reads[1]!);
  });

  it("stops at a stop sequence taken from an earlier answer and reports it", async () => {
    const request = { ...question("Describe a mountain in detail."), max_tokens: 40 };
    const whole = (await client.messages.create(request)).content[0] as Anthropic.TextBlock;
    // A stop string from the middle of the known greedy answer: generation must end right before it.
    const start = Math.floor(whole.text.length / 2);
    const stopSequence = whole.text.slice(start, start + 3);
    const cut = whole.text.indexOf(stopSequence);
    const stopped = await client.messages.create({ ...request, stop_sequences: [stopSequence] });
    expect(stopped.stop_reason).toBe("stop_sequence");
    expect(stopped.stop_sequence).toBe(stopSequence);
    const text = stopped.content.length === 0 ? "" : (stopped.content[0] as Anthropic.TextBlock).text;
    expect(text).toBe(whole.text.slice(0, cut));
  });

  it("counts tokens with the real template: more messages, more tokens", async () => {
    const one = await client.messages.countTokens({ model: MODEL, messages: [{ role: "user", content: "Hi" }] });
    const two = await client.messages.countTokens({
      model: MODEL,
      system: [{ type: "text", text: "Be brief." }],
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(one.input_tokens).toBeGreaterThan(1);
    expect(two.input_tokens).toBeGreaterThan(one.input_tokens);
    const message = await client.messages.create({ ...question("Hi"), max_tokens: 1 });
    expect(message.usage.input_tokens + message.usage.cache_read_input_tokens!).toBe(one.input_tokens);
  });

  it("lists the served model and its aliases in Anthropic's model shape", async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) {
      expect(model.type).toBe("model");
      ids.push(model.id);
    }
    expect(ids).toContain(MODEL);
    expect(ids).toContain("local-claude-small");
    expect(ids.length).toBe(3);
    const retrieved = await client.models.retrieve("local-claude-small");
    expect(retrieved.id).toBe("local-claude-small");
    await expect(client.models.retrieve("no-such-model")).rejects.toBeInstanceOf(Anthropic.NotFoundError);
  });

  it("raises the SDK's BadRequestError for bad input, naming the field", async () => {
    const bad = (body: object) => client.messages.create(body as Anthropic.MessageCreateParamsNonStreaming);
    await expect(bad({ model: MODEL, messages: [{ role: "user", content: "Hi" }] })).rejects.toThrow(/max_tokens/);
    await expect(bad({ ...question("Hi"), temperature: 1.5 })).rejects.toThrow(/temperature: Too big/);
    const image = bad({
      ...question("Hi"),
      messages: [
        {
          role: "user",
          content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "AA==" } }],
        },
      ],
    });
    await expect(image).rejects.toThrow(
      /messages\.0\.content\.0: image blocks are not supported: this model reads text only/,
    );
    const error = await bad({ ...question("Hi"), messages: [] }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Anthropic.BadRequestError);
    expect((error as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({
      type: "error",
      error: { type: "invalid_request_error" },
    });
    await expect(bad({ ...question("Hi"), tool_choice: { type: "tool", name: "missing" } })).rejects.toThrow(
      /tool_choice\.name: no tool named .*missing/,
    );
  });

  it("accepts the fields a local model cannot honour and ignores them", async () => {
    const message = await client.messages.create({
      ...question("Hi"),
      max_tokens: 2,
      metadata: { user_id: "user-1" },
      service_tier: "auto",
      thinking: { type: "enabled", budget_tokens: 1024 },
      context_management: { edits: [] },
      output_config: { effort: "low" },
      some_future_field: { anything: true },
    } as Anthropic.MessageCreateParamsNonStreaming);
    expect(message.usage.output_tokens).toBe(2);
  });
});
