/**
 * The h3 application: the edge middleware, the operational routes (/, /health, /health/ready,
 * /status, /metrics, /admin/config) and the one error mapper that renders every failure in the
 * protocol of the path it happened on. Protocol routes are mounted by later layers.
 */
import { H3, HTTPError, type H3Event } from "h3";
import { describeConfig, type LoadedConfig } from "../config/load.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics.js";
import { ApiError, protocolForPath, renderError, type Problem } from "../protocols/index.js";
import { VERSION } from "../version.js";
import { edgeMiddleware, nodeFacts } from "./edge.js";
import type { Lifecycle } from "./lifecycle.js";

/**
 * What /status reports about the layers below the server. The defaults describe a server with no
 * model runtime attached: nothing loaded, no agents, no KV bytes.
 */
export interface StatusSources {
  backend(): { requested: string; active: string | null };
  model(): { id: string; loaded: boolean };
  agents(): { hot: number; warm: number };
  memoryBytes(): { weights: number; kvCache: number };
}

export interface AppOptions {
  loaded: LoadedConfig;
  logger: Logger;
  metrics: Metrics;
  lifecycle: Lifecycle;
  status?: Partial<StatusSources>;
  /** Adds routes behind the edge (the protocol layers mount theirs here). */
  mount?: (app: H3) => void;
}

export function createApp({ loaded, logger, metrics, lifecycle, status = {}, mount }: AppOptions): H3 {
  const { config } = loaded;
  const sources: StatusSources = {
    backend: () => ({ requested: config.backend, active: null }),
    model: () => ({ id: config.mlxModelId, loaded: false }),
    agents: () => ({ hot: 0, warm: 0 }),
    memoryBytes: () => ({ weights: 0, kvCache: 0 }),
    ...status,
  };
  const startedAt = Date.now();

  const app = new H3({
    // Expected failures are ApiErrors; the mapper below logs the unexpected ones itself.
    silent: true,
    onError: (error, event) => errorResponse(error, event, logger),
  });
  app.use(edgeMiddleware({ config, lifecycle }));

  app.on("HEAD", "/", () => new Response(null, { status: 200 }));
  app.get("/", () => ({ name: "agent-memory", version: VERSION }));

  app.get("/health", () => {
    if (lifecycle.unhealthy !== null) {
      return Response.json({ status: "unhealthy", reason: lifecycle.unhealthy }, { status: 503 });
    }
    return { status: "healthy" };
  });
  app.get("/health/ready", () => {
    const ready = lifecycle.state === "ready" && lifecycle.unhealthy === null;
    const state = lifecycle.unhealthy !== null ? "unhealthy" : lifecycle.state;
    return Response.json({ status: state }, { status: ready ? 200 : 503 });
  });

  app.get("/status", () => {
    const memory = process.memoryUsage();
    const bytes = sources.memoryBytes();
    return {
      name: "agent-memory",
      version: VERSION,
      state: lifecycle.state,
      healthy: lifecycle.unhealthy === null,
      uptime_seconds: Math.round((Date.now() - startedAt) / 1000),
      backend: sources.backend(),
      model: sources.model(),
      agents: sources.agents(),
      requests_in_flight: lifecycle.inFlightCount,
      memory: {
        rss_bytes: memory.rss,
        heap_used_bytes: memory.heapUsed,
        weights_bytes: bytes.weights,
        kv_cache_bytes: bytes.kvCache,
      },
    };
  });

  app.get("/metrics", async () => {
    const body = await metrics.registry.metrics();
    return new Response(body, { headers: { "content-type": metrics.registry.contentType } });
  });

  app.get("/admin/config", () => describeConfig(loaded));

  mount?.(app);
  return app;
}

/** Renders any failure in the protocol of its path; a client's mistake is never a 500. */
function errorResponse(error: HTTPError, event: H3Event, logger: Logger): Response {
  const apiError = error instanceof ApiError ? error : error.cause instanceof ApiError ? error.cause : null;
  const problem: Problem = apiError ?? problemFromHttpError(error, event);
  if (!apiError && problem.kind === "internal") {
    const cause = error.cause instanceof Error ? error.cause : error;
    logger.error(`unhandled error on ${event.req.method} ${event.url.pathname}: ${cause.stack ?? cause.message}`);
  }
  const rendered = renderError(protocolForPath(event.url.pathname), problem);
  // Headers set before the failure (CORS, Connection) must survive into the error response.
  const headers = new Headers(event.res.headers);
  headers.set("content-type", "application/json");
  for (const [name, value] of Object.entries(apiError?.options.headers ?? {})) headers.set(name, value);
  return new Response(JSON.stringify(rendered.body), { status: rendered.status, headers });
}

function problemFromHttpError(error: HTTPError, event: H3Event): Problem {
  const route = `${event.req.method} ${event.url.pathname}`;
  if (error.status === 404) return { kind: "not_found", message: `no route for ${route}` };
  if (error.status === 405) return { kind: "invalid_request", message: `method not allowed: ${route}` };
  if (error.status >= 400 && error.status < 500) return { kind: "invalid_request", message: error.message };
  let requestId = "unknown";
  try {
    requestId = nodeFacts(event).requestId;
  } catch {
    // the failure happened before the request was tagged
  }
  return { kind: "internal", message: `internal error; the server log has details (request id ${requestId})` };
}
