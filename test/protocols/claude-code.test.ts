/**
 * A request shaped like Claude Code's (test/support/claude-code-request.ts: three system blocks with
 * cache_control, a system message inside `messages`, thinking blocks sent back, tool use and results,
 * 24 tools, thinking / context_management / output_config, `?beta=true`, a body over 70 KB) against the
 * real server: a well-formed event stream comes back, and the next turn of the same session reads the
 * whole previous prompt from memory — through the SDK's beta client, as Claude Code itself does.
 */
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServe, type ServeProcess } from "../support/cli.js";
import { claudeCodeRequest } from "../support/claude-code-request.js";

interface Usage {
  input_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  output_tokens: number;
}

/** The fields of Anthropic's stream events these checks read. */
interface Frame {
  event: string;
  data: {
    type: string;
    message?: { role: string; model: string; content: unknown[]; usage: Usage };
    delta?: { stop_reason?: string; text?: string };
    usage?: Usage;
  };
}

function parseEventStream(text: string): Frame[] {
  return text
    .split("\n\n")
    .filter((chunk) => chunk.trim() !== "")
    .map((chunk) => {
      const event = /^event: (.*)$/m.exec(chunk)?.[1];
      const data = /^data: (.*)$/m.exec(chunk)?.[1];
      if (event === undefined || data === undefined) throw new Error(`not an Anthropic SSE frame: ${chunk}`);
      return { event, data: JSON.parse(data) as Frame["data"] };
    });
}

let server: ServeProcess;
beforeAll(async () => {
  server = await startServe();
});
afterAll(async () => {
  server?.child.kill("SIGTERM");
  await server?.exited;
});

describe("a Claude Code request", () => {
  // ~20K prompt tokens prefilled on a CPU (lavapipe) take most of a minute, more beside other tests.
  it("gets a well-formed stream, and its next turn reads the whole previous prompt from memory", async () => {
    const sessionId = "4f1c2a7e-0d3b-4c55-9a1e-claude-code-test";
    const { headers, body } = claudeCodeRequest(sessionId);
    const payload = JSON.stringify(body);
    expect(payload.length).toBeGreaterThan(70_000);

    const counted = await fetch(`${server.url}/v1/messages/count_tokens?beta=true`, {
      method: "POST",
      headers,
      body: JSON.stringify({ model: body.model, system: body.system, messages: body.messages, tools: body.tools }),
    });
    const promptTokens = ((await counted.json()) as { input_tokens: number }).input_tokens;

    const response = await fetch(`${server.url}/v1/messages?beta=true`, { method: "POST", headers, body: payload });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const frames = parseEventStream(await response.text());
    for (const frame of frames) expect(frame.data.type).toBe(frame.event);
    const events = frames.map((frame) => frame.event).filter((event) => event !== "ping");
    expect(events[0]).toBe("message_start");
    expect(events[1]).toBe("content_block_start");
    expect(events.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
    expect(new Set(events.slice(2, -3))).toEqual(new Set(["content_block_delta"]));

    const start = frames[0]!.data.message!;
    expect(start).toMatchObject({ role: "assistant", model: body.model, content: [] });
    expect(start.usage.cache_creation_input_tokens + start.usage.cache_read_input_tokens).toBe(promptTokens);
    const delta = frames.find((frame) => frame.event === "message_delta")!.data;
    expect(delta.delta!.stop_reason).toBe("max_tokens");
    expect(delta.usage!.output_tokens).toBe(64);
    const reply = frames
      .filter((frame) => frame.event === "content_block_delta")
      .map((frame) => frame.data.delta!.text!)
      .join("");

    // The next turn, as Claude Code sends it: the same prefix, the reply, and a new user message.
    const client = new Anthropic({ baseURL: server.url, apiKey: "unused", maxRetries: 0 });
    const next = {
      ...body,
      max_tokens: 8,
      messages: [
        ...body.messages,
        { role: "assistant", content: [{ type: "text", text: reply }] },
        { role: "user", content: [{ type: "text", text: "Thanks. Now commit the fix." }] },
      ],
    } as unknown as Anthropic.Beta.MessageCreateParamsStreaming;
    const stream = client.beta.messages.stream(next, {
      headers: { "x-claude-code-session-id": sessionId, "anthropic-beta": headers["anthropic-beta"] },
    });
    const final = await stream.finalMessage();
    expect(final.stop_reason).toBe("max_tokens");
    expect(final.usage.cache_read_input_tokens).toBeGreaterThanOrEqual(promptTokens);
    expect(final.usage.input_tokens).toBe(0);
  }, 300_000);
});
