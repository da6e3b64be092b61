/**
 * Serving the app over Node's HTTP server through listhen, and taking it down gracefully. The Node
 * level wrapper tags each request (request id, abort signal), and measures and logs it when the
 * response closes, so streamed responses are timed to their last byte.
 */
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { toNodeHandler } from "h3/node";
import { listen } from "listhen";
import type { LoadedConfig } from "../config/load.js";
import type { Logger } from "../logging.js";
import { createMetrics, type Metrics } from "../metrics.js";
import type { H3 } from "h3";
import { createApp, type StatusSources } from "./app.js";
import { NODE_FACTS, type NodeRequestFacts } from "./edge.js";
import { Lifecycle } from "./lifecycle.js";

export interface ServeOptions {
  loaded: LoadedConfig;
  logger: Logger;
  metrics?: Metrics;
  lifecycle?: Lifecycle;
  status?: Partial<StatusSources>;
  mount?: (app: H3) => void;
}

export interface RunningServer {
  /** Base URL clients can reach (a wildcard bind address is shown as 127.0.0.1). */
  url: string;
  port: number;
  lifecycle: Lifecycle;
  metrics: Metrics;
  /** Stop accepting, let in-flight requests finish within the configured bound, run flush hooks. */
  stop(): Promise<{ cancelled: number; failedHooks: number }>;
}

/** Thrown when the server cannot bind; the message says what to change. */
export class ListenError extends Error {
  override name = "ListenError";
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const { loaded, logger } = options;
  const { config } = loaded;
  const metrics = options.metrics ?? createMetrics();
  const lifecycle = options.lifecycle ?? new Lifecycle();
  const app = createApp({ loaded, logger, metrics, lifecycle, status: options.status, mount: options.mount });
  const handler = instrumented(toNodeHandler(app), { lifecycle, metrics, logger: logger.child("http") });

  let server: Server;
  try {
    const listener = await listen(handler, {
      // Exactly the port asked for, never a neighbour: get-port-please otherwise walks to the next
      // free one (and maps 0 to 3000), which would leave clients knocking on the wrong door.
      port:
        config.serverPort === 0
          ? { random: true }
          : {
              port: config.serverPort,
              ports: [],
              portRange: [config.serverPort, config.serverPort],
              alternativePortRange: [config.serverPort, config.serverPort],
              random: false,
              verbose: false,
            },
      hostname: config.serverHost,
      showURL: false,
      qr: false,
      open: false,
      clipboard: false,
      public: false,
      autoClose: false,
      isProd: true,
    });
    server = listener.server;
  } catch (error) {
    throw listenError(error as Error, config.serverHost, config.serverPort);
  }

  const port = (server.address() as AddressInfo).port;
  const shownHost = ["0.0.0.0", "::", "[::]"].includes(config.serverHost) ? "127.0.0.1" : config.serverHost;
  const url = `http://${shownHost.includes(":") ? `[${shownHost}]` : shownHost}:${port}`;

  let stopping: Promise<{ cancelled: number; failedHooks: number }> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      server.close();
      server.closeIdleConnections();
      const cancelled = await lifecycle.drain(config.serverShutdownTimeoutS * 1000, logger);
      server.closeAllConnections();
      const failedHooks = await lifecycle.flush(logger);
      return { cancelled, failedHooks };
    })();
    return stopping;
  };
  return { url, port, lifecycle, metrics, stop };
}

function listenError(error: Error, host: string, port: number): ListenError {
  const code = (error as NodeJS.ErrnoException).code;
  if (/available port/i.test(error.message) || code === "EADDRINUSE") {
    return new ListenError(
      `port ${port} on ${host} is in use; choose another with --port or SEMANTIC_SERVER_PORT (0 picks a free one)`,
    );
  }
  if (code === "EACCES") {
    return new ListenError(`no permission to listen on port ${port}; use a port above 1023 with --port`);
  }
  if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND") {
    return new ListenError(`cannot bind to ${host}: no such address here; check --host or SEMANTIC_SERVER_HOST`);
  }
  return new ListenError(`cannot listen on ${host}:${port}: ${error.message}`);
}

/** Client-sent request ids are echoed when they look like ids; anything else gets a fresh one. */
const ACCEPTABLE_REQUEST_ID = /^[\w.:@-]{1,128}$/;
/** Probes and scrapes arrive every few seconds; their lines go to DEBUG so INFO stays readable. */
const QUIET_PATHS = /^\/(health(\/.*)?|metrics)$/;

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => unknown;

function instrumented(
  handle: NodeHandler,
  deps: { lifecycle: Lifecycle; metrics: Metrics; logger: Logger },
): NodeHandler {
  return (req, res) => {
    const started = performance.now();
    const offered = req.headers["x-request-id"];
    const requestId =
      typeof offered === "string" && ACCEPTABLE_REQUEST_ID.test(offered)
        ? offered
        : `req_${randomBytes(12).toString("hex")}`;
    res.setHeader("x-request-id", requestId);

    const tracking = deps.lifecycle.beginRequest();
    const facts: NodeRequestFacts = { requestId, signal: tracking.signal };
    (req as IncomingMessage & { [NODE_FACTS]?: NodeRequestFacts })[NODE_FACTS] = facts;

    res.on("close", () => {
      const completed = res.writableFinished;
      if (!completed) tracking.abort(new Error("client disconnected"));
      tracking.end();
      const seconds = (performance.now() - started) / 1000;
      const method = req.method ?? "GET";
      const endpoint = facts.endpoint ?? "unmatched";
      deps.metrics.requestsTotal.inc({ method, endpoint, status: String(res.statusCode) });
      deps.metrics.requestDuration.observe({ method, endpoint }, seconds);
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      const line =
        `${method} ${path} ${res.statusCode} ${(seconds * 1000).toFixed(1)}ms id=${requestId}` +
        (completed ? "" : " (client disconnected)");
      if (QUIET_PATHS.test(path)) deps.logger.debug(line);
      else deps.logger.info(line);
    });
    handle(req, res);
  };
}
