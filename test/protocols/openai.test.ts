/**
 * The OpenAI Chat Completions API end to end: the real `agent-memory serve` process on the tiny
 * fixture model, driven by the official `openai` client. temperature 0 makes answers reproducible,
 * so streamed and non-streamed answers, stops and seeds are checked against earlier answers.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServe, type ServeProcess } from "../support/cli.js";

const MODEL = "gpt-local";
let server: ServeProcess;
let client: OpenAI;

beforeAll(async () => {
  server = await startServe([], { env: { SEMANTIC_MODEL_ALIASES: MODEL, SEMANTIC_MLX_MAX_CONTEXT_LENGTH: "2048" } });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});

afterAll(async () => {
  server?.child.kill("SIGTERM");
  await server?.exited;
});

const ask = (content: string, extra: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}) =>
  ({
    model: MODEL,
    max_completion_tokens: 20,
    temperature: 0,
    messages: [
      { role: "developer", content: "You are terse." },
      { role: "user", content },
    ],
    ...extra,
  }) as OpenAI.ChatCompletionCreateParamsNonStreaming;

describe("POST /v1/chat/completions through the OpenAI SDK", () => {
  it("answers a chat.completion in OpenAI's shape", async () => {
    const completion = await client.chat.completions.create(ask("What is the capital of France?"));
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.object).toBe("chat.completion");
    expect(completion.model).toBe(MODEL);
    expect(completion.choices).toHaveLength(1);
    const [choice] = completion.choices;
    expect(choice!.finish_reason).toBe("length");
    expect(choice!.message.role).toBe("assistant");
    expect(choice!.message.content!.length).toBeGreaterThan(0);
    expect(completion.usage!.completion_tokens).toBe(20);
    expect(completion.usage!.total_tokens).toBe(completion.usage!.prompt_tokens + 20);
    expect(completion.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThanOrEqual(0);
  });

  it("streams chunks that add up to the non-streamed answer, then usage and [DONE]", async () => {
    const request = ask("Tell me a story about a dragon.");
    const whole = await client.chat.completions.create(request);
    const stream = await client.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(chunks.every((chunk) => chunk.object === "chat.completion.chunk")).toBe(true);
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe(whole.choices[0]!.message.content);
    const finishing = chunks.filter((chunk) => chunk.choices[0]?.finish_reason);
    expect(finishing.map((chunk) => chunk.choices[0]!.finish_reason)).toEqual(["length"]);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.completion_tokens).toBe(20);
    expect(last.usage!.prompt_tokens).toBe(whole.usage!.prompt_tokens);
    // Without include_usage no chunk carries usage.
    const plain = await client.chat.completions.create({ ...request, stream: true });
    for await (const chunk of plain) expect(chunk.usage ?? null).toBeNull();
  });

  it("reads more of a session's conversation from memory every turn (X-Session-ID or session_id)", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "system", content: "You are a helpful assistant." }];
    const cached: number[] = [];
    const prompts: number[] = [];
    const sessionId = `openai-multi-turn-${Date.now()}`;
    for (const [turn, content] of ["Hi there!", "What's new?", "Goodbye."].entries()) {
      messages.push({ role: "user", content });
      // The first two turns name the session in a header, the last in the body: the same agent.
      const completion =
        turn < 2
          ? await client.chat.completions.create(
              { model: MODEL, max_tokens: 8, temperature: 0, messages },
              { headers: { "X-Session-ID": sessionId } },
            )
          : await client.chat.completions.create({
              model: MODEL,
              max_tokens: 8,
              temperature: 0,
              messages,
              session_id: sessionId,
            } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      cached.push(completion.usage!.prompt_tokens_details!.cached_tokens!);
      if (prompts.length > 0) expect(cached.at(-1)).toBeGreaterThanOrEqual(prompts.at(-1)!);
      prompts.push(completion.usage!.prompt_tokens);
      messages.push({ role: "assistant", content: completion.choices[0]!.message.content });
    }
    expect(cached[1]).toBeGreaterThan(cached[0]!);
    expect(cached[2]).toBeGreaterThan(cached[1]!);
  });

  it("stops before a stop string taken from an earlier answer", async () => {
    const request = ask("List some fruits.", { max_completion_tokens: 40 });
    const whole = (await client.chat.completions.create(request)).choices[0]!.message.content!;
    const start = Math.floor(whole.length / 2);
    const stop = whole.slice(start, start + 3);
    const stopped = await client.chat.completions.create({ ...request, stop: [stop, "never-generated-zzz"] });
    expect(stopped.choices[0]!.finish_reason).toBe("stop");
    expect(stopped.choices[0]!.message.content).toBe(whole.slice(0, whole.indexOf(stop)));
  });

  it("samples reproducibly with a seed", async () => {
    const seeded = ask("Pick a random word.", { temperature: 1, seed: 1234 });
    const first = await client.chat.completions.create(seeded);
    const second = await client.chat.completions.create(seeded);
    expect(second.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
  });

  it("lists the served model and its alias in OpenAI's list shape", async () => {
    const models = await client.models.list();
    const ids = models.data.map((model) => model.id);
    expect(ids).toContain(MODEL);
    expect(models.data.every((model) => model.object === "model" && model.owned_by === "agent-memory")).toBe(true);
    expect((await client.models.retrieve(MODEL)).id).toBe(MODEL);
    await expect(client.models.retrieve("nope")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("raises the SDK's BadRequestError with `param` naming the field", async () => {
    const failure = async (body: object) =>
      client.chat.completions
        .create(body as OpenAI.ChatCompletionCreateParamsNonStreaming)
        .catch((error: unknown) => error);
    const n = (await failure(ask("Hi", { n: 2 }))) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(n).toBeInstanceOf(OpenAI.BadRequestError);
    expect(n.param).toBe("n");
    expect(n.type).toBe("invalid_request_error");
    const temperature = (await failure(ask("Hi", { temperature: 3 }))) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(temperature.param).toBe("temperature");
    const role = (await failure({ model: MODEL, messages: [{ role: "robot", content: "Hi" }] })) as InstanceType<
      typeof OpenAI.BadRequestError
    >;
    expect(role).toBeInstanceOf(OpenAI.BadRequestError);
    expect(role.param).toBe("messages.0.role");
    const image = (await failure(
      ask("", {
        messages: [
          { role: "user", content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AA==" } }] },
        ],
      }),
    )) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(image.param).toBe("messages.0.content.0");
    expect(image.message).toMatch(/text only/);
    const tooLong = (await failure(ask("word ".repeat(3000)))) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    expect(tooLong.message).toMatch(/context window/);
  });
});
