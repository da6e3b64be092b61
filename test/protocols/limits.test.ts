/**
 * Keys, rate limits, overload and metrics through the official SDKs against the real server: each SDK
 * raises its own typed error (AuthenticationError, RateLimitError, Anthropic's OverloadedError on 529,
 * OpenAI's 503), and the token and duration metrics carry the endpoint that did the work.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServe, type ServeProcess } from "../support/cli.js";

const KEY = "sk-local-test-key";
let server: ServeProcess;

beforeAll(async () => {
  server = await startServe([], {
    env: {
      SEMANTIC_API_KEY: KEY,
      SEMANTIC_SERVER_RATE_LIMIT_PER_AGENT: "2",
      SEMANTIC_MLX_MAX_BATCH_SIZE: "1",
      SEMANTIC_SERVER_MAX_QUEUED_REQUESTS: "1",
    },
  });
});

afterAll(async () => {
  server?.child.kill("SIGTERM");
  await server?.exited;
});

const anthropic = (apiKey = KEY) => new Anthropic({ baseURL: server.url, apiKey, maxRetries: 0 });
const openai = (apiKey = KEY) => new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0 });
const hello = { model: "local", max_tokens: 2, messages: [{ role: "user" as const, content: "Hello" }] };

describe("API keys, rate limits and overload through the SDKs", () => {
  it("refuses a wrong key with each SDK's AuthenticationError", async () => {
    await expect(anthropic("sk-wrong").messages.create(hello)).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
    await expect(openai("sk-wrong").chat.completions.create(hello)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect((await anthropic().messages.create(hello)).usage.output_tokens).toBe(2);
  });

  it("raises RateLimitError with Retry-After once an agent exceeds its per-minute limit", async () => {
    const session = { headers: { "x-session-id": "rate-limited-agent" } };
    await anthropic().messages.create(hello, session);
    await openai().chat.completions.create(hello, session);
    const limited = await anthropic()
      .messages.create(hello, session)
      .catch((error: unknown) => error);
    expect(limited).toBeInstanceOf(Anthropic.RateLimitError);
    expect(
      Number((limited as InstanceType<typeof Anthropic.RateLimitError>).headers.get("retry-after")),
    ).toBeGreaterThan(0);
    await expect(openai().chat.completions.create(hello, session)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  });

  it("answers 529 overloaded_error (Anthropic) and 503 (OpenAI) while the queue is full", async () => {
    // One sequence at a time: a long generation runs, a second request waits, a third finds the queue full.
    const running = new AbortController();
    const long = await anthropic().messages.create(
      { ...hello, max_tokens: 100_000, stream: true },
      { signal: running.signal },
    );
    // Read up to the first token without closing the stream (a `break` out of for-await would cancel it).
    const events = long[Symbol.asyncIterator]();
    for (;;) {
      const next = (await events.next()) as IteratorResult<Anthropic.MessageStreamEvent, undefined>;
      if (next.done || next.value.type === "content_block_delta") break;
    }
    const waiting = anthropic()
      .messages.create(hello)
      .catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const overloaded = await anthropic()
      .messages.create(hello)
      .catch((error: unknown) => error);
    expect(overloaded).toBeInstanceOf(Anthropic.OverloadedError);
    const body = (overloaded as InstanceType<typeof Anthropic.OverloadedError>).error as { error: { type: string } };
    expect(body.error.type).toBe("overloaded_error");
    expect((overloaded as InstanceType<typeof Anthropic.OverloadedError>).headers.get("retry-after")).toBe("2");
    const unavailable = await openai()
      .chat.completions.create(hello)
      .catch((error: unknown) => error);
    expect(unavailable).toBeInstanceOf(OpenAI.InternalServerError);
    expect((unavailable as InstanceType<typeof OpenAI.InternalServerError>).status).toBe(503);
    running.abort();
    // Once the long one is cancelled the waiting request is served.
    expect(((await waiting) as Anthropic.Message).usage.output_tokens).toBe(2);
  });

  it("labels the token and duration metrics with the endpoint that did the work", async () => {
    await openai().chat.completions.create(hello);
    const metrics = await (await fetch(`${server.url}/metrics`, { headers: { "x-api-key": KEY } })).text();
    const count = (endpoint: string) =>
      Number(new RegExp(`^semantic_tokens_generated_total\\{endpoint="${endpoint}"\\} (\\d+)`, "m").exec(metrics)?.[1]);
    expect(count("/v1/messages")).toBeGreaterThanOrEqual(6);
    expect(count("/v1/chat/completions")).toBeGreaterThanOrEqual(2);
    expect(metrics).toMatch(/^semantic_generation_duration_seconds_count\{endpoint="\/v1\/chat\/completions"\} [1-9]/m);
    expect(metrics).toMatch(/^semantic_requests_total\{method="POST",endpoint="\/v1\/messages",status="529"\} 1/m);
  });
});
