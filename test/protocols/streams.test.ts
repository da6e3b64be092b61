/**
 * Protocol unit tests over a scripted token source (no model): what each protocol streams when the
 * engine's events arrive, including a failure part-way, and the heartbeat the SSE layer sends while a
 * stream is quiet (a long prefill). The end-to-end suites cover the same frames on a real model.
 */
import { describe, expect, it } from "vitest";
import type { GenerationEvent } from "../../src/engine/events.js";
import { createMessage } from "../../src/protocols/anthropic/messages.js";
import type { RequestScope } from "../../src/protocols/chat.js";
import { createChatCompletion } from "../../src/protocols/openai/chat-completions.js";
import type { ProtocolResponse, SseFrame } from "../../src/protocols/response.js";
import type { ChatRuntime } from "../../src/protocols/runtime.js";
import { sseStream } from "../../src/server/sse.js";
import { createToolCallParser } from "../../src/tools/parsers/index.js";
import { chatEvents } from "../../src/tools/tool-stream.js";

const usage = { promptTokens: 12, cachedTokens: 8, generatedTokens: 2 };
const timings = { queuedMs: 0, timeToFirstTokenMs: 1, decodeMs: 1, totalMs: 2 };

/** A runtime whose generation is the given script (as the runtime passes it on, with no tool parser). */
function scripted(script: () => AsyncIterable<GenerationEvent>): ChatRuntime {
  return { start: () => ({ promptTokens: 12, events: chatEvents(script(), null) }) } as unknown as ChatRuntime;
}

const scope = (agentId: string | null = "agent"): RequestScope => ({
  memory: { agentId, tenant: "public" },
  signal: new AbortController().signal,
  endpoint: "/test",
});

/** Events arrive asynchronously, as the engine's steps produce them. */
const nextStep = () => new Promise((resolve) => setImmediate(resolve));

async function* answer(): AsyncIterable<GenerationEvent> {
  yield { type: "prompt", promptTokens: 12, cachedTokens: 8 };
  await nextStep();
  yield { type: "delta", text: "Hel", tokenIds: [1] };
  yield { type: "delta", text: "", tokenIds: [] };
  yield { type: "delta", text: "lo", tokenIds: [2] };
  yield { type: "done", finishReason: "stop", stopSequence: null, usage, timings };
}

async function* failing(): AsyncIterable<GenerationEvent> {
  yield { type: "prompt", promptTokens: 12, cachedTokens: 0 };
  yield { type: "delta", text: "Hel", tokenIds: [1] };
  await nextStep();
  throw new Error("device lost");
}

/** Text, then a Hermes-style call split across deltas, then end-of-turn. */
async function* callingTool(): AsyncIterable<GenerationEvent> {
  yield { type: "prompt", promptTokens: 12, cachedTokens: 8 };
  for (const text of [
    "Let me check.\n<tool",
    '_call>\n{"name": "get_weather", "argu',
    'ments": {"city": "Oslo"}}\n</tool_call>',
  ]) {
    await nextStep();
    yield { type: "delta", text, tokenIds: [1] };
  }
  yield { type: "done", finishReason: "stop", stopSequence: null, usage, timings };
}

/** A runtime whose generation goes through the Hermes tool-call parser, as in tool_choice auto. */
function scriptedWithTools(script: () => AsyncIterable<GenerationEvent>): ChatRuntime {
  const parser = () =>
    createToolCallParser("hermes", { tools: [{ name: "get_weather", parameters: {} }], streamArguments: false });
  return { start: () => ({ promptTokens: 12, events: chatEvents(script(), parser()) }) } as unknown as ChatRuntime;
}

async function frames(response: ProtocolResponse): Promise<SseFrame[]> {
  if (response.kind !== "stream") throw new Error("expected a stream");
  const out: SseFrame[] = [];
  for await (const frame of response.frames) out.push(frame);
  return out;
}

const json = (frame: SseFrame) => JSON.parse(frame.data!) as Record<string, unknown>;
const anthropicBody = { model: "m", max_tokens: 5, stream: true, messages: [{ role: "user", content: "Hi" }] };
const openaiBody = {
  model: "m",
  stream: true,
  stream_options: { include_usage: true },
  messages: [{ role: "user", content: "Hi" }],
};

describe("Anthropic event stream", () => {
  it("frames a generation exactly as Anthropic does, usage split into read / created / plain input", async () => {
    const out = await frames(await createMessage(scripted(answer), anthropicBody, scope()));
    expect(out.map((frame) => frame.event)).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(json(out[0]!)).toMatchObject({
      type: "message_start",
      message: {
        type: "message",
        role: "assistant",
        model: "m",
        content: [],
        stop_reason: null,
        usage: { input_tokens: 0, cache_creation_input_tokens: 4, cache_read_input_tokens: 8, output_tokens: 0 },
      },
    });
    expect(json(out[1]!)).toEqual({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
    expect(json(out[2]!)).toEqual({
      type: "content_block_delta",
      index: 0,
      delta: { type: "text_delta", text: "Hel" },
    });
    expect(json(out[5]!)).toEqual({
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { input_tokens: 0, cache_creation_input_tokens: 4, cache_read_input_tokens: 8, output_tokens: 2 },
    });
  });

  it("counts prefilled tokens as plain input when the request names no agent (nothing is kept)", async () => {
    const out = await frames(await createMessage(scripted(answer), anthropicBody, scope(null)));
    expect(json(out[0]!)).toMatchObject({
      message: { usage: { input_tokens: 4, cache_creation_input_tokens: 0, cache_read_input_tokens: 8 } },
    });
  });

  it("ends with an error event when generation fails part-way", async () => {
    const out = await frames(await createMessage(scripted(failing), anthropicBody, scope()));
    expect(out.map((frame) => frame.event)).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "error",
    ]);
    expect(json(out.at(-1)!)).toEqual({
      type: "error",
      error: { type: "api_error", message: "generation failed: device lost" },
    });
  });
});

describe("tool calls in the streams", () => {
  it("Anthropic: a text block, then a tool_use block with input_json_delta, then stop_reason tool_use", async () => {
    const out = await frames(await createMessage(scriptedWithTools(callingTool), anthropicBody, scope()));
    const payloads = out.map(json);
    expect(payloads.map((payload) => payload.type)).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_stop",
      "content_block_start",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(payloads[2]).toMatchObject({ index: 0, delta: { type: "text_delta", text: "Let me check." } });
    expect(payloads[4]).toMatchObject({
      index: 1,
      content_block: { type: "tool_use", name: "get_weather", input: {} },
    });
    expect((payloads[4]!.content_block as { id: string }).id).toMatch(/^toolu_/);
    expect(payloads[5]).toEqual({
      type: "content_block_delta",
      index: 1,
      delta: { type: "input_json_delta", partial_json: '{"city":"Oslo"}' },
    });
    expect(payloads[7]).toMatchObject({ delta: { stop_reason: "tool_use" } });
  });

  it("OpenAI: tool_calls deltas with an id and name, argument fragments, finish_reason tool_calls", async () => {
    const out = await frames(await createChatCompletion(scriptedWithTools(callingTool), openaiBody, scope()));
    const deltas = out.slice(0, -1).map(json) as Array<{
      choices: Array<{ delta: Record<string, unknown>; finish_reason: string | null }>;
    }>;
    const toolDeltas = deltas.flatMap((chunk) => (chunk.choices[0]?.delta.tool_calls as object[] | undefined) ?? []);
    expect(toolDeltas[0]).toMatchObject({
      index: 0,
      type: "function",
      function: { name: "get_weather", arguments: "" },
    });
    expect((toolDeltas[0] as { id: string }).id).toMatch(/^call_/);
    expect(toolDeltas.slice(1)).toEqual([{ index: 0, function: { arguments: '{"city":"Oslo"}' } }]);
    expect(deltas.map((chunk) => chunk.choices[0]?.finish_reason).filter(Boolean)).toEqual(["tool_calls"]);
    expect(deltas.map((chunk) => chunk.choices[0]?.delta.content).filter(Boolean)).toEqual(["Let me check."]);
  });
});

describe("OpenAI chunk stream", () => {
  it("sends the role first, content deltas, finish_reason, the usage chunk and [DONE]", async () => {
    const out = await frames(await createChatCompletion(scripted(answer), openaiBody, scope()));
    expect(out.at(-1)).toEqual({ data: "[DONE]" });
    const chunks = out.slice(0, -1).map(json) as Array<{ choices: Array<Record<string, unknown>>; usage: unknown }>;
    expect(chunks.map((chunk) => chunk.choices[0]?.delta ?? null)).toEqual([
      { role: "assistant", content: "", refusal: null },
      { content: "Hel" },
      { content: "lo" },
      {},
      null,
    ]);
    expect(chunks[3]!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
    expect(chunks.at(-1)!.usage).toMatchObject({
      prompt_tokens: 12,
      completion_tokens: 2,
      total_tokens: 14,
      prompt_tokens_details: { cached_tokens: 8 },
    });
  });

  it("sends an error object when generation fails part-way", async () => {
    const out = await frames(await createChatCompletion(scripted(failing), openaiBody, scope()));
    expect(json(out.at(-1)!)).toEqual({
      error: { message: "generation failed: device lost", type: "server_error", param: null, code: null },
    });
  });
});

describe("SSE heartbeat", () => {
  it("sends the heartbeat frame whenever the stream is quiet longer than the interval", async () => {
    async function* slow(): AsyncIterable<SseFrame> {
      yield { event: "first", data: "1" };
      await new Promise((resolve) => setTimeout(resolve, 130));
      yield { event: "second", data: "2" };
    }
    const reader = sseStream(slow(), { event: "ping", data: '{"type":"ping"}' }, 40).getReader();
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const events = [...text.matchAll(/^event: (\w+)$/gm)].map((match) => match[1]);
    expect(events[0]).toBe("first");
    expect(events.at(-1)).toBe("second");
    expect(events.filter((event) => event === "ping").length).toBeGreaterThanOrEqual(2);
    expect(text).toContain('event: ping\ndata: {"type":"ping"}\n\n');
  });

  it("closes the frames when the client goes away, which cancels the generation behind them", async () => {
    let closed = false;
    async function* endless(): AsyncIterable<SseFrame> {
      try {
        for (;;) {
          yield { data: "x" };
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      } finally {
        closed = true;
      }
    }
    const reader = sseStream(endless(), { comment: "ping" }, 1000).getReader();
    await reader.read();
    await reader.cancel();
    expect(closed).toBe(true);
  });
});
