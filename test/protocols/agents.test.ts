/**
 * The Agent API end to end: the README's curl examples run as written (with real curl) against the
 * real server, the API's error cases, and an agent that survives a server restart — written at
 * shutdown, listed as warm by the next process over the same cache directory, reloaded on its next
 * request and continuing exactly as an uncached run does.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, scratchDir, startServe, type ServeProcess } from "../support/cli.js";

/** The shell commands of the README's Agent API section, continuation lines joined. */
function readmeCurlCommands(): string[] {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const start = readme.indexOf("### Agent API");
  const section = readme.slice(start, readme.indexOf("\n## ", start));
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
  return blocks
    .join("")
    .replace(/\\\n\s*/g, "")
    .split("\n")
    .filter((line) => line.startsWith("curl "));
}

/** The Agent API's answers, as far as these tests read them. */
interface Answer {
  agent_id: string;
  tier: string;
  text: string;
  finish_reason: string;
  tokens_generated: number;
  prompt_tokens: number;
  cached_tokens: number;
  cache_size_tokens: number;
  cache_bytes: number;
  agents: Array<{ agent_id: string }>;
  hot_agents: number;
  hits: { hot: number };
  error: { type: string; message: string; param?: string };
  openapi: string;
  paths: Record<
    string,
    Record<string, { requestBody?: { content: Record<string, { schema: { required?: string[] } }> } }>
  >;
}

/** Runs one README command against `url` with real curl; the status code comes back beside the body. */
function curl(command: string, url: string): { status: number; body: Answer } {
  const line = command.replaceAll("http://127.0.0.1:8000", url);
  const output = execFileSync("bash", ["-c", `${line} -w '\\n%{http_code}'`], { encoding: "utf8" });
  const cut = output.lastIndexOf("\n");
  return { status: Number(output.slice(cut + 1)), body: JSON.parse(output.slice(0, cut)) as Answer };
}

async function call(url: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Answer };
}

describe("the Agent API", () => {
  let server: ServeProcess;
  beforeAll(async () => {
    server = await startServe([], { env: { SEMANTIC_MLX_DEFAULT_TEMPERATURE: "0" } });
  });
  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
  });

  it("works as the README's curl examples show", () => {
    const commands = readmeCurlCommands();
    expect(commands.length).toBe(9);
    const results = commands.map((command) => curl(command, server.url));
    const [created, first, second, fetched, listed, stats, deleted, anthropic, openai] = results;
    expect(created!.status).toBe(201);
    expect(created!.body).toMatchObject({ agent_id: "researcher", tier: "hot", cache_size_tokens: 0 });

    expect(first!.status).toBe(200);
    expect(first!.body.tokens_generated).toBe(16);
    expect(first!.body.finish_reason).toBe("length");
    expect(typeof first!.body.text).toBe("string");
    expect(first!.body.cache_size_tokens).toBe(first!.body.prompt_tokens + 16);

    // The second prompt extends the first: its shared start comes from the agent's cache.
    expect(second!.status).toBe(200);
    expect(second!.body.cached_tokens).toBeGreaterThanOrEqual(first!.body.prompt_tokens - 1);
    expect(second!.body.cached_tokens).toBeLessThan(second!.body.prompt_tokens);

    expect(fetched!.body).toMatchObject({
      agent_id: "researcher",
      tier: "hot",
      cache_size_tokens: second!.body.cache_size_tokens,
    });
    expect(fetched!.body.cache_bytes).toBeGreaterThan(0);
    expect(listed!.body.agents.map((agent) => agent.agent_id)).toContain("researcher");
    expect(stats!.body.hot_agents).toBeGreaterThanOrEqual(1);
    expect(stats!.body.hits.hot).toBeGreaterThanOrEqual(1);
    expect(deleted!.body).toEqual({ agent_id: "researcher", deleted: true });
    expect(curl(commands[3]!, server.url).status).toBe(404);

    expect(anthropic!.status).toBe(200);
    expect(anthropic!.body).toMatchObject({ type: "message", model: "local", stop_reason: "max_tokens" });
    expect(openai!.status).toBe(200);
    expect(openai!.body).toMatchObject({ object: "chat.completion", model: "local" });
  });

  it("answers mistakes with 4xx errors that say what is wrong", async () => {
    const { url } = server;
    expect((await call(url, "POST", "/v1/agents", { agent_id: "twice" })).status).toBe(201);
    const again = await call(url, "POST", "/v1/agents", { agent_id: "twice" });
    expect(again.status).toBe(409);
    expect(again.body.error.message).toMatch(/already exists/);
    expect((await call(url, "GET", "/v1/agents/nobody")).status).toBe(404);
    expect((await call(url, "DELETE", "/v1/agents/nobody")).status).toBe(404);
    const unknown = await call(url, "POST", "/v1/agents/nobody/generate", { prompt: "Hi" });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toMatch(/POST \/v1\/agents/);
    const both = await call(url, "POST", "/v1/agents/twice/generate", {
      prompt: "Hi",
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(both.status).toBe(400);
    expect(both.body.error.param).toBe("prompt");
    const missing = await call(url, "POST", "/v1/agents", {});
    expect(missing.status).toBe(400);
    expect(missing.body.error.param).toBe("agent_id");
    const tooLong = await call(url, "POST", "/v1/agents", { agent_id: "x".repeat(600) });
    expect(tooLong.status).toBe(400);
    const chat = await call(url, "POST", "/v1/agents/twice/generate", {
      messages: [{ role: "user", content: "Hello" }],
      max_tokens: 4,
    });
    expect(chat.status).toBe(200);
    expect(chat.body.tokens_generated).toBe(4);
    const document = await call(url, "GET", "/openapi.json");
    expect(document.body.openapi).toBe("3.1.0");
    expect(Object.keys(document.body.paths)).toEqual(
      expect.arrayContaining(["/v1/messages", "/v1/chat/completions", "/v1/agents/{agent_id}/generate"]),
    );
    expect(document.body.paths["/v1/agents"]!.post!.requestBody!.content["application/json"]!.schema.required).toEqual([
      "agent_id",
    ]);
  });
});

describe("an agent across a server restart", () => {
  it("is written at shutdown, listed warm after the restart, reloaded and continued exactly", async () => {
    const env = {
      SEMANTIC_AGENT_CACHE_DIR: join(scratchDir("agent-memory-restart-"), "agents"),
      SEMANTIC_MLX_DEFAULT_TEMPERATURE: "0",
    };
    const firstPrompt = "Agents resend their whole conversation on every turn, so";
    const nextPrompt = `${firstPrompt} the server keeps what it computed and prefills only the rest.`;

    const before = await startServe([], { env });
    // The uncached baseline: the follow-up prompt on a fresh server, before anything was kept.
    expect((await call(before.url, "POST", "/v1/agents", { agent_id: "control" })).status).toBe(201);
    const baseline = await call(before.url, "POST", "/v1/agents/control/generate", {
      prompt: nextPrompt,
      max_tokens: 12,
    });
    expect(baseline.body.cached_tokens).toBe(0);
    expect((await call(before.url, "POST", "/v1/agents", { agent_id: "persisted" })).status).toBe(201);
    const firstTurn = await call(before.url, "POST", "/v1/agents/persisted/generate", {
      prompt: firstPrompt,
      max_tokens: 12,
    });
    before.child.kill("SIGTERM");
    expect((await before.exited).code).toBe(0);

    const after = await startServe(["--log-level", "DEBUG"], { env });
    try {
      const listed = await call(after.url, "GET", "/v1/agents/persisted");
      expect(listed.body).toMatchObject({ tier: "warm", cache_size_tokens: firstTurn.body.cache_size_tokens });
      const next = await call(after.url, "POST", "/v1/agents/persisted/generate", {
        prompt: nextPrompt,
        max_tokens: 12,
      });
      expect(next.body.cached_tokens).toBeGreaterThanOrEqual(firstTurn.body.prompt_tokens - 1);
      expect(next.body.text).toBe(baseline.body.text);
      expect(after.log()).toMatch(/agent "persisted" reloaded from disk/);
      expect((await call(after.url, "GET", "/v1/agents/persisted")).body.tier).toBe("hot");
    } finally {
      after.child.kill("SIGTERM");
      await after.exited;
    }
  });
});
