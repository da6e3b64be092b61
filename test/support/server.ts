/**
 * A real HTTP server in this process, configured from a given environment: for edge tests that need
 * many configurations quickly, or to mount extra routes. Requests still go over real sockets.
 */
import type { H3 } from "h3";
import { loadConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/logging.js";
import { startServer, type RunningServer } from "../../src/server/serve.js";
import { scratchDir } from "./cli.js";

export interface TestServer extends RunningServer {
  logLines: string[];
}

export async function startTestServer(
  env: Record<string, string> = {},
  options: { mount?: (app: H3) => void; ready?: boolean } = {},
): Promise<TestServer> {
  const loaded = loadConfig({
    env: { SEMANTIC_SERVER_HOST: "127.0.0.1", SEMANTIC_SERVER_PORT: "0", ...env },
    cwd: scratchDir(),
  });
  const logLines: string[] = [];
  const logger = createLogger(loaded.config.serverLogLevel, (line) => logLines.push(line));
  const server = await startServer({ loaded, logger, mount: options.mount });
  if (options.ready ?? true) server.lifecycle.markReady();
  return { ...server, logLines };
}
