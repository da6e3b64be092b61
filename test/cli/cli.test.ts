/**
 * The real CLI, spawned as users run it: version, help, config (with its sources), bad flags and bad
 * values, and `serve` answering over HTTP and stopping cleanly on a signal.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { USER_GUIDE_METRICS } from "../support/user-guide.js";
import { REPO_ROOT, runCli, scratchDir, startServe } from "../support/cli.js";

const packageVersion = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string })
  .version;

describe("agent-memory version and help", () => {
  it("prints the package version", async () => {
    const result = await runCli(["version"]);
    expect(result).toMatchObject({ code: 0, stdout: `${packageVersion}\n`, stderr: "" });
  });

  it("prints help for the program and for each command", async () => {
    const top = await runCli(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/serve[\s\S]*config[\s\S]*version/);
    const serve = await runCli(["serve", "--help"]);
    expect(serve.code).toBe(0);
    for (const flag of [
      "--host",
      "--port",
      "--model",
      "--backend",
      "--log-level",
      "--cache-dir",
      "--max-batch-size",
      "--api-key",
    ]) {
      expect(serve.stdout).toContain(flag);
    }
  });

  it.each([
    [["serve", "--prot", "1"], "serve: unknown option --prot"],
    [["serve", "--port"], "serve: option --port needs a value"],
    [["frobnicate"], "unknown command 'frobnicate'"],
    [["config", "extra"], "config: unexpected argument extra"],
  ])("exits 2 with one line for %j", async (args, expected) => {
    const result = await runCli(args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain(expected);
  });
});

describe("agent-memory config", () => {
  it("prints the effective configuration with each value's source and secrets masked", async () => {
    const cwd = scratchDir();
    writeFileSync(join(cwd, ".env"), "SEMANTIC_MLX_MAX_BATCH_SIZE=3\nSEMANTIC_SERVER_LOG_LEVEL=ERROR\n");
    const result = await runCli(["config", "--port", "9123"], {
      cwd,
      env: { SEMANTIC_SERVER_LOG_LEVEL: "DEBUG", SEMANTIC_API_KEY: "very-secret-key" },
    });
    expect(result.code).toBe(0);
    expect(result.stdout).not.toContain("very-secret-key");
    const printed = JSON.parse(result.stdout) as Record<string, { value: unknown; source: string }>;
    expect(printed.SEMANTIC_SERVER_PORT).toEqual({ value: 9123, source: "flag" });
    expect(printed.SEMANTIC_SERVER_LOG_LEVEL).toEqual({ value: "DEBUG", source: "environment" });
    expect(printed.SEMANTIC_MLX_MAX_BATCH_SIZE).toEqual({ value: 3, source: `.env (${join(cwd, ".env")})` });
    expect(printed.SEMANTIC_SERVER_HOST).toEqual({ value: "0.0.0.0", source: "default" });
    expect(printed.SEMANTIC_API_KEY).toEqual({ value: ["********"], source: "environment" });
  });
});

describe("bad configuration stops start-up", () => {
  it.each([
    [
      { SEMANTIC_SERVER_PORT: "abc" },
      [],
      'SEMANTIC_SERVER_PORT (from the environment) = "abc"',
      "an integer from 0 to 65535",
    ],
    [{ SEMANTIC_MLX_KV_BITS: "5" }, [], 'SEMANTIC_MLX_KV_BITS (from the environment) = "5"', "4, 8 or none"],
    [{}, ["--backend", "cuda"], '--backend (from the command line) = "cuda"', "one of auto, mlx, webgpu"],
    [{}, ["--log-level", "LOUD"], '--log-level (from the command line) = "LOUD"', "DEBUG, INFO, WARNING"],
  ])("%j %j exits 1 naming the setting, the value and what is allowed", async (env, flags, names, allowed) => {
    const result = await runCli(["serve", ...flags], { env });
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(names);
    expect(lines[0]).toContain(allowed);
  });

  it("exits 1 with advice when the port is taken", async () => {
    const blocker = createServer().listen(0, "127.0.0.1");
    await new Promise((resolve) => blocker.once("listening", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const result = await runCli(["serve", "--host", "127.0.0.1", "--port", String(port)]);
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toBe(
        `agent-memory: port ${port} on 127.0.0.1 is in use; choose another with --port or SEMANTIC_SERVER_PORT (0 picks a free one)`,
      );
    } finally {
      blocker.close();
    }
  });
});

describe("agent-memory serve", () => {
  it("answers /health, /status and /metrics, logs each request, and exits 0 on SIGTERM within the bound", async () => {
    const server = await startServe([], { env: { SEMANTIC_SERVER_SHUTDOWN_TIMEOUT_S: "3" } });
    expect(await (await fetch(server.url + "/health")).json()).toEqual({ status: "healthy" });
    expect((await fetch(server.url + "/health/ready")).status).toBe(200);
    const status = (await (await fetch(server.url + "/status")).json()) as { version: string };
    expect(status.version).toBe(packageVersion);
    const metrics = await (await fetch(server.url + "/metrics")).text();
    for (const name of USER_GUIDE_METRICS) {
      expect(metrics).toContain(`# TYPE ${name} `);
    }
    expect(server.log()).toMatch(/INFO +\[http\] GET \/status 200 [\d.]+ms id=req_/);

    const signalled = performance.now();
    server.child.kill("SIGTERM");
    const { code } = await server.exited;
    expect(code).toBe(0);
    expect(performance.now() - signalled).toBeLessThan(3000 + 2000);
    expect(server.log()).toContain("SIGTERM received: shutting down");
  });

  it("exits 0 on SIGINT too, and honours --log-level and --api-key", async () => {
    const server = await startServe(["--log-level", "DEBUG", "--api-key", "cli-key"]);
    expect((await fetch(server.url + "/status")).status).toBe(401);
    expect((await fetch(server.url + "/status", { headers: { "x-api-key": "cli-key" } })).status).toBe(200);
    expect(server.log()).toContain("DEBUG    [agent-memory] configuration:");
    expect(server.log()).not.toContain("cli-key");
    server.child.kill("SIGINT");
    expect((await server.exited).code).toBe(0);
  });
});
