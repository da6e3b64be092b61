/**
 * Graceful shutdown over real HTTP: in-flight requests finish within the bound or are cancelled at
 * it, flush hooks run afterwards (all of them, even when one fails), and readiness goes to 503.
 */
import { describe, expect, it } from "vitest";
import { requestInfo } from "../../src/server/edge.js";
import { createLogger } from "../../src/logging.js";
import { startTestServer } from "../support/server.js";

const quietLogger = createLogger("CRITICAL", () => {});

describe("graceful shutdown", () => {
  it("lets an in-flight request finish, then runs the flush hooks", async () => {
    const events: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const server = await startTestServer(
      { SEMANTIC_SERVER_SHUTDOWN_TIMEOUT_S: "10" },
      {
        mount: (app) =>
          app.get("/slow", async () => {
            await released;
            events.push("request finished");
            return { done: true };
          }),
      },
    );
    server.lifecycle.onFlush("persist", () => void events.push("flushed"));

    const response = fetch(server.url + "/slow");
    await waitFor(() => server.lifecycle.inFlightCount === 1);
    const stopped = server.stop();
    await sleep(100);
    expect(server.lifecycle.state).toBe("shutting_down");
    expect(events).toEqual([]);
    release();
    expect(await (await response).json()).toEqual({ done: true });
    expect(await stopped).toEqual({ cancelled: 0, failedHooks: 0 });
    expect(events).toEqual(["request finished", "flushed"]);
  });

  it("cancels requests still running at the bound, and still runs every flush hook", async () => {
    let sawAbort = false;
    const server = await startTestServer(
      { SEMANTIC_SERVER_SHUTDOWN_TIMEOUT_S: "0.3" },
      {
        mount: (app) =>
          app.get("/forever", async (event) => {
            const { signal } = requestInfo(event);
            await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
            sawAbort = true;
            return { cancelled: true };
          }),
      },
    );
    const ran: string[] = [];
    server.lifecycle.onFlush("broken", () => {
      throw new Error("disk full");
    });
    server.lifecycle.onFlush("second", () => void ran.push("second"));

    const response = fetch(server.url + "/forever").catch(() => null);
    await waitFor(() => server.lifecycle.inFlightCount === 1);
    const started = performance.now();
    const outcome = await server.stop();
    const elapsed = performance.now() - started;
    expect(outcome).toEqual({ cancelled: 1, failedHooks: 1 });
    expect(sawAbort).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(ran).toEqual(["second"]);
    expect(server.logLines.some((line) => line.includes('flush hook "broken" failed: disk full'))).toBe(true);
    await response;
  });

  it("answers 503 (and not ready) to requests that arrive while draining", async () => {
    const server = await startTestServer();
    const draining = server.lifecycle.drain(1000, quietLogger);
    const ready = await fetch(server.url + "/health/ready");
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: "shutting_down" });
    const refused = await fetch(server.url + "/v1/messages", { method: "POST", body: "{}" });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("5");
    expect(await refused.json()).toMatchObject({
      type: "error",
      error: { message: expect.stringContaining("shutting down") },
    });
    await draining;
    await server.stop();
  });
});

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean, timeoutMs = 5000) {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error("condition not met in time");
    await sleep(10);
  }
}
