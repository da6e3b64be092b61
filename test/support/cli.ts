/**
 * Running the real, compiled CLI as a child process, the way users do: in a scratch working
 * directory (so no stray .env is read) with an environment free of the developer's SEMANTIC_* values.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = join(REPO_ROOT, "dist/src/cli/main.js");

export function scratchDir(prefix = "agent-memory-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * The tiny model global setup generates (test/support/build.ts) and `serve` loads by default in
 * tests: no test ever reaches for the network or the real default model.
 */
export function testModelDirectory(): string {
  const directory = process.env.AGENT_MEMORY_TEST_MODEL;
  if (!directory) throw new Error("AGENT_MEMORY_TEST_MODEL is not set: run the tests through vitest's global setup");
  return directory;
}

export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("SEMANTIC_")));
  const model = process.env.AGENT_MEMORY_TEST_MODEL;
  // A small KV store and a scratch cache directory: tests never fill a GPU or write to $HOME. No
  // warm-up (seconds per server on lavapipe): the tests that are about it turn it on.
  return {
    ...env,
    HF_HUB_OFFLINE: "1",
    SEMANTIC_MLX_CACHE_BUDGET_MB: "64",
    SEMANTIC_MLX_WARMUP: "false",
    SEMANTIC_AGENT_CACHE_DIR: join(scratchDir("agent-memory-cache-"), "caches"),
    ...(model ? { SEMANTIC_MLX_MODEL_ID: model } : {}),
    ...extra,
  };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? scratchDir(),
      env: cleanEnv(options.env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  /** Everything the server wrote to stderr so far (its log). */
  log(): string;
  /** Resolves with the exit code once the process is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `agent-memory serve` on a free port and resolves once its model is loaded and it is ready. */
export function startServe(
  args: string[] = [],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, "serve", "--host", "127.0.0.1", "--port", "0", ...args], {
    cwd: options.cwd ?? scratchDir(),
    env: cleanEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`serve was not ready within 90s; log:\n${log}`));
    }, 90_000);
    child.stderr.on("data", (chunk: Buffer) => {
      log += chunk.toString();
      const match = log.match(/listening on (http:\/\/[\d.]+:\d+)/);
      if (match && /\bready: /.test(log)) {
        clearTimeout(timer);
        resolve({ url: match[1]!, child, log: () => log, exited });
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before it was ready; log:\n${log}`));
    });
  });
}
