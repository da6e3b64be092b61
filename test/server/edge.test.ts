/**
 * The HTTP edge over real sockets: API and admin keys, CORS, rate limits, body limits, malformed
 * JSON, request ids, readiness, metrics — each error in the shape of the protocol whose path it hit.
 */
import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { USER_GUIDE_METRICS } from "../support/user-guide.js";
import { startTestServer, type TestServer } from "../support/server.js";

const servers: TestServer[] = [];
async function serve(env: Record<string, string> = {}, options?: Parameters<typeof startTestServer>[1]) {
  const server = await startTestServer(env, options);
  servers.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.stop()));
});

const ANTHROPIC_PATH = "/v1/messages";
const OPENAI_PATH = "/v1/chat/completions";
const json = (body: unknown) => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

describe("API keys", () => {
  const env = { SEMANTIC_API_KEY: "key-one,key-two" };

  it("refuses requests without a key in each protocol's error shape", async () => {
    const { url } = await serve(env);
    const anthropic = await fetch(url + ANTHROPIC_PATH, json({}));
    expect(anthropic.status).toBe(401);
    expect(await anthropic.json()).toEqual({
      type: "error",
      error: { type: "authentication_error", message: expect.stringContaining("missing API key") },
    });
    const openai = await fetch(url + OPENAI_PATH, json({}));
    expect(openai.status).toBe(401);
    expect(await openai.json()).toEqual({
      error: {
        message: expect.stringContaining("missing API key"),
        type: "invalid_request_error",
        param: null,
        code: "invalid_api_key",
      },
    });
    const models = await fetch(url + "/v1/models");
    expect(((await models.json()) as { error: { code: string } }).error.code).toBe("invalid_api_key");
    const plain = await fetch(url + "/status");
    expect(plain.status).toBe(401);
    expect(await plain.json()).toEqual({ error: { type: "authentication", message: expect.any(String) } });
  });

  it("refuses a wrong key and accepts each configured key in either header form", async () => {
    const { url } = await serve(env);
    const wrong = await fetch(url + "/status", { headers: { "x-api-key": "key-three" } });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { message: string } }).error.message).toBe("invalid API key");
    expect((await fetch(url + "/status", { headers: { "x-api-key": "key-one" } })).status).toBe(200);
    expect((await fetch(url + "/status", { headers: { authorization: "Bearer key-two" } })).status).toBe(200);
    expect((await fetch(url + "/metrics", { headers: { authorization: "Bearer key-one" } })).status).toBe(200);
    expect((await fetch(url + "/metrics")).status).toBe(401);
  });

  it("lets health probes and HEAD / through without a key", async () => {
    const { url } = await serve(env);
    expect((await fetch(url + "/health")).status).toBe(200);
    expect((await fetch(url + "/health/ready")).status).toBe(200);
    expect((await fetch(url + "/", { method: "HEAD" })).status).toBe(200);
  });

  it("asks for no key when none is configured", async () => {
    const { url } = await serve();
    expect((await fetch(url + "/status")).status).toBe(200);
  });
});

describe("admin routes", () => {
  it("are disabled without SEMANTIC_ADMIN_KEY", async () => {
    const { url } = await serve();
    const response = await fetch(url + "/admin/config", { headers: { "x-admin-key": "anything" } });
    expect(response.status).toBe(403);
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain("SEMANTIC_ADMIN_KEY");
  });

  it("need the admin key, and show the configuration with secrets masked", async () => {
    const { url } = await serve({ SEMANTIC_ADMIN_KEY: "admin-secret", SEMANTIC_API_KEY: "api-secret" });
    expect((await fetch(url + "/admin/config")).status).toBe(401);
    expect((await fetch(url + "/admin/config", { headers: { "x-admin-key": "api-secret" } })).status).toBe(401);
    const response = await fetch(url + "/admin/config", { headers: { "x-admin-key": "admin-secret" } });
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).not.toContain("admin-secret");
    expect(text).not.toContain("api-secret");
    expect(JSON.parse(text)).toMatchObject({ SEMANTIC_SERVER_HOST: { value: "127.0.0.1", source: "environment" } });
  });
});

describe("CORS", () => {
  it("answers a preflight from an allowed origin, and names no origin for others", async () => {
    const { url } = await serve({
      SEMANTIC_SERVER_CORS_ORIGINS: "http://app.test, http://other.test",
      SEMANTIC_API_KEY: "k",
    });
    const preflight = await fetch(url + ANTHROPIC_PATH, {
      method: "OPTIONS",
      headers: {
        origin: "http://app.test",
        "access-control-request-method": "POST",
        "access-control-request-headers": "x-api-key,content-type",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("http://app.test");
    expect(preflight.headers.get("access-control-allow-methods")).toContain("POST");
    expect(preflight.headers.get("access-control-allow-headers")).toContain("x-api-key");

    const stranger = await fetch(url + ANTHROPIC_PATH, {
      method: "OPTIONS",
      headers: { origin: "http://evil.test", "access-control-request-method": "POST" },
    });
    expect(stranger.headers.get("access-control-allow-origin")).toBeNull();

    // A real (non-preflight) request keeps its CORS headers even when it fails, so the page can read the error.
    const failed = await fetch(url + ANTHROPIC_PATH, { ...json({}), headers: { origin: "http://other.test" } });
    expect(failed.status).toBe(401);
    expect(failed.headers.get("access-control-allow-origin")).toBe("http://other.test");
  });

  it("allows any origin with *", async () => {
    const { url } = await serve({ SEMANTIC_SERVER_CORS_ORIGINS: "*" });
    const response = await fetch(url + "/health", { headers: { origin: "http://anywhere.test" } });
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
  });
});

describe("rate limits", () => {
  it("answers 429 with Retry-After once an agent has spent its per-minute allowance", async () => {
    const { url } = await serve({ SEMANTIC_SERVER_RATE_LIMIT_PER_AGENT: "3" });
    const send = (session: string) =>
      fetch(url + ANTHROPIC_PATH, {
        ...json({}),
        headers: { "x-session-id": session, "content-type": "application/json" },
      });
    for (let i = 0; i < 3; i++) expect((await send("agent-a")).status).not.toBe(429);
    const limited = await send("agent-a");
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBe(20);
    expect(await limited.json()).toEqual({
      type: "error",
      error: { type: "rate_limit_error", message: expect.stringContaining('agent "agent-a"') },
    });
    expect((await send("agent-b")).status).not.toBe(429);
  });

  it("reads the agent from the body's session_id too, and speaks OpenAI's shape on its paths", async () => {
    const { url } = await serve({ SEMANTIC_SERVER_RATE_LIMIT_PER_AGENT: "1" });
    expect((await fetch(url + OPENAI_PATH, json({ session_id: "s1" }))).status).not.toBe(429);
    const limited = await fetch(url + OPENAI_PATH, json({ session_id: "s1" }));
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(await limited.json()).toEqual({
      error: { message: expect.any(String), type: "requests", param: null, code: "rate_limit_exceeded" },
    });
  });

  it("limits the server as a whole, but never health probes", async () => {
    const { url } = await serve({ SEMANTIC_SERVER_RATE_LIMIT_GLOBAL: "2" });
    expect((await fetch(url + "/status")).status).toBe(200);
    expect((await fetch(url + "/status")).status).toBe(200);
    const limited = await fetch(url + "/status");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("30");
    for (let i = 0; i < 5; i++) expect((await fetch(url + "/health")).status).toBe(200);
  });
});

describe("request bodies", () => {
  it("answers 413 for a body over the limit announced by Content-Length", async () => {
    const { url } = await serve({ SEMANTIC_SERVER_MAX_BODY_MB: "0.001" });
    const response = await fetch(url + ANTHROPIC_PATH, json({ text: "x".repeat(2000) }));
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual({
      type: "error",
      error: { type: "request_too_large", message: expect.stringContaining("SEMANTIC_SERVER_MAX_BODY_MB") },
    });
  });

  it("answers 413 for a chunked body that grows past the limit", async () => {
    const { url } = await serve({ SEMANTIC_SERVER_MAX_BODY_MB: "0.001" });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        url + OPENAI_PATH,
        { method: "POST", headers: { "content-type": "application/json" } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      for (let i = 0; i < 20; i++) req.write("x".repeat(100));
      req.end();
    });
    expect(status).toBe(413);
  });

  it("answers 400, never 500, for malformed JSON, in each protocol's shape", async () => {
    const { url } = await serve();
    const bad = { method: "POST", headers: { "content-type": "application/json" }, body: '{"model": ' };
    const anthropic = await fetch(url + ANTHROPIC_PATH, bad);
    expect(anthropic.status).toBe(400);
    expect(await anthropic.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    const openai = await fetch(url + OPENAI_PATH, bad);
    expect(openai.status).toBe(400);
    expect(await openai.json()).toMatchObject({
      error: { type: "invalid_request_error", message: expect.stringContaining("not valid JSON") },
    });
    const agents = await fetch(url + "/v1/agents", bad);
    expect(agents.status).toBe(400);
    expect(await agents.json()).toMatchObject({ error: { type: "invalid_request" } });
  });
});

describe("routes and request ids", () => {
  it("answers /health, HEAD / and unknown routes (404 in the protocol's shape)", async () => {
    const { url } = await serve();
    expect(await (await fetch(url + "/health")).json()).toEqual({ status: "healthy" });
    const head = await fetch(url + "/", { method: "HEAD" });
    expect(head.status).toBe(200);
    const missing = await fetch(url + "/v1/messages/nope");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ type: "error", error: { type: "not_found_error" } });
  });

  it("echoes the client's x-request-id and makes one up otherwise, on errors too", async () => {
    const { url } = await serve({ SEMANTIC_API_KEY: "k" });
    const echoed = await fetch(url + "/health", { headers: { "x-request-id": "client-id-42" } });
    expect(echoed.headers.get("x-request-id")).toBe("client-id-42");
    const made = await fetch(url + "/status");
    expect(made.status).toBe(401);
    expect(made.headers.get("x-request-id")).toMatch(/^req_[0-9a-f]{24}$/);
    const hostile = await fetch(url + "/health", { headers: { "x-request-id": "a b\tc" } });
    expect(hostile.headers.get("x-request-id")).toMatch(/^req_/);
  });

  it("reports readiness: 503 while loading, 200 when ready, 503 while shutting down", async () => {
    const server = await serve({}, { ready: false });
    const loading = await fetch(server.url + "/health/ready");
    expect(loading.status).toBe(503);
    expect(await loading.json()).toEqual({ status: "loading" });
    server.lifecycle.markReady();
    expect((await fetch(server.url + "/health/ready")).status).toBe(200);
    server.lifecycle.markUnhealthy("device lost");
    expect((await fetch(server.url + "/health")).status).toBe(503);
    expect(await (await fetch(server.url + "/health/ready")).json()).toEqual({ status: "unhealthy" });
  });

  it("reports status: version, state, backend, model, agents, memory", async () => {
    const { url } = await serve({ SEMANTIC_MLX_MODEL_ID: "some/model", SEMANTIC_BACKEND: "webgpu" });
    const status = (await (await fetch(url + "/status")).json()) as Record<string, unknown>;
    expect(status).toMatchObject({
      name: "agent-memory",
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      state: "ready",
      backend: { requested: "webgpu", active: null },
      model: { id: "some/model", loaded: false },
      agents: { hot: 0, warm: 0 },
    });
    expect((status.memory as { rss_bytes: number }).rss_bytes).toBeGreaterThan(0);
  });
});

describe("metrics", () => {
  it("exposes the user guide's metric names and counts requests as they finish", async () => {
    const { url } = await serve();
    await fetch(url + "/status");
    await fetch(url + "/status");
    await fetch(url + "/nowhere");
    const text = await (await fetch(url + "/metrics")).text();
    for (const name of [...USER_GUIDE_METRICS, "process_cpu_user_seconds_total", "nodejs_heap_size_used_bytes"]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(text).toContain('semantic_requests_total{method="GET",endpoint="/status",status="200"} 2');
    expect(text).toContain('semantic_requests_total{method="GET",endpoint="unmatched",status="404"} 1');
    expect(text).toMatch(/semantic_request_duration_seconds_count\{method="GET",endpoint="\/status"\} 2/);
  });
});
