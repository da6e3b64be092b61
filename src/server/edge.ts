/**
 * The HTTP edge, in the order a request meets it: draining check, CORS, API/admin keys, body (size
 * limit, JSON), rate limits. Each step is a plain function of the event; `edgeMiddleware` runs them.
 * Failures are thrown as ApiError and rendered in the path's protocol by the app's error mapper.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { handleCors, type H3Event, type Middleware } from "h3";
import type { Config } from "../config/settings.js";
import { ApiError, protocolForPath, type Protocol } from "../protocols/index.js";
import type { Lifecycle } from "./lifecycle.js";
import { RateLimiter } from "./rate-limit.js";

/** What the edge learned about a request, for the handlers behind it. */
export interface RequestInfo {
  requestId: string;
  protocol: Protocol;
  /** Parsed JSON body of POST/PUT/PATCH requests; undefined when there was none. */
  body: unknown;
  /** The agent (session) the request belongs to, if it named one. */
  agentId: string | null;
  /**
   * Whose caches the request may use: a fingerprint of its API key ("public" when the server has
   * none), so KV blocks are never shared across keys.
   */
  tenant: string;
  /** Aborts when the client disconnects or shutdown's bound passes. */
  signal: AbortSignal;
}

/** Per-request facts the Node-level wrapper (serve.ts) attaches to the IncomingMessage. */
export interface NodeRequestFacts {
  requestId: string;
  signal: AbortSignal;
  /** Set by the edge: the route pattern, for metric labels. */
  endpoint?: string;
}
export const NODE_FACTS = Symbol("agent-memory.request");
type NodeRequestWithFacts = IncomingMessage & { [NODE_FACTS]?: NodeRequestFacts };

export function nodeFacts(event: H3Event): NodeRequestFacts {
  const facts = (event.runtime?.node?.req as NodeRequestWithFacts | undefined)?.[NODE_FACTS];
  if (!facts) throw new Error("request did not pass through the agent-memory node handler");
  return facts;
}

export function requestInfo(event: H3Event): RequestInfo {
  const info = event.context.agentMemory;
  if (!info) throw new Error("request did not pass through the edge middleware");
  return info;
}

declare module "h3" {
  interface H3EventContext {
    agentMemory?: RequestInfo;
  }
}

const isHealthPath = (pathname: string) => pathname === "/health" || pathname.startsWith("/health/");
const isAdminPath = (pathname: string) => pathname === "/admin" || pathname.startsWith("/admin/");
const METHODS_WITH_BODY = new Set(["POST", "PUT", "PATCH"]);

export interface EdgeOptions {
  config: Config;
  lifecycle: Lifecycle;
}

export function edgeMiddleware({ config, lifecycle }: EdgeOptions): Middleware {
  const apiKeyDigests = config.apiKeys.map(digest);
  const adminKeyDigest = config.adminKey === null ? null : digest(config.adminKey);
  const limiter = new RateLimiter(config.serverRateLimitPerAgent, config.serverRateLimitGlobal);
  const maxBodyBytes = Math.floor(config.serverMaxBodyMb * 1024 * 1024);
  const cors = corsOptions(config.serverCorsOrigins);

  return async (event, next) => {
    const { pathname } = event.url;
    const facts = nodeFacts(event);
    facts.endpoint = event.context.matchedRoute?.route ?? "unmatched";
    const info: RequestInfo = {
      requestId: facts.requestId,
      protocol: protocolForPath(pathname),
      body: undefined,
      agentId: null,
      tenant: PUBLIC_TENANT,
      signal: facts.signal,
    };
    event.context.agentMemory = info;
    const isProbe = isHealthPath(pathname) || (event.req.method === "HEAD" && pathname === "/");

    if (lifecycle.state === "shutting_down" && !isHealthPath(pathname)) {
      event.res.headers.set("connection", "close");
      throw new ApiError("unavailable", "the server is shutting down; retry against another instance", {
        headers: { "retry-after": "5" },
      });
    }

    if (cors) {
      const preflight = handleCors(event, cors);
      if (preflight !== false) return preflight;
    }

    if (isAdminPath(pathname)) checkAdminKey(event, adminKeyDigest);
    else if (!isProbe && apiKeyDigests.length > 0) info.tenant = tenantOf(checkApiKey(event, apiKeyDigests));

    if (METHODS_WITH_BODY.has(event.req.method)) info.body = await readJsonBody(event, maxBodyBytes);

    if (!isProbe && pathname !== "/metrics") {
      info.agentId = agentIdOf(event, info.body);
      const decision = limiter.take(info.agentId);
      if (!decision.allowed) {
        const who = decision.scope === "agent" ? `agent "${info.agentId}"` : "this server";
        throw new ApiError("rate_limit", `rate limit exceeded for ${who}; retry after ${decision.retryAfterSeconds}s`, {
          headers: { "retry-after": String(decision.retryAfterSeconds) },
        });
      }
    }
    return next();
  };
}

function corsOptions(origins: string[]): Parameters<typeof handleCors>[1] | null {
  if (origins.length === 0) return null;
  return {
    origin: origins.includes("*") ? "*" : origins,
    methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    allowHeaders: "*",
    exposeHeaders: ["x-request-id", "retry-after", "request-id"],
    maxAge: "600",
  };
}

/** Keys are compared as SHA-256 digests with timingSafeEqual: constant time, whatever their lengths. */
function digest(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}

function matchesAny(candidate: string, digests: Buffer[]): boolean {
  const candidateDigest = digest(candidate);
  let matched = false;
  for (const keyDigest of digests) matched = timingSafeEqual(candidateDigest, keyDigest) || matched;
  return matched;
}

function presentedApiKey(event: H3Event): string | null {
  const header = event.req.headers.get("x-api-key");
  if (header) return header.trim();
  const authorization = event.req.headers.get("authorization");
  const bearer = authorization?.match(/^Bearer\s+(.+)$/i);
  return bearer?.[1]?.trim() ?? null;
}

/** The key the request presented, once it is known to be one of the server's keys. */
function checkApiKey(event: H3Event, digests: Buffer[]): string {
  const key = presentedApiKey(event);
  if (key === null) {
    throw new ApiError("authentication", "missing API key: send `x-api-key: KEY` or `Authorization: Bearer KEY`");
  }
  if (!matchesAny(key, digests)) throw new ApiError("authentication", "invalid API key");
  return key;
}

const PUBLIC_TENANT = "public";

/** A name for the key's tenant that does not reveal the key (it is written into cache files). */
function tenantOf(key: string): string {
  return `key-${createHash("sha256").update(`agent-memory tenant\0${key}`).digest("hex").slice(0, 32)}`;
}

function checkAdminKey(event: H3Event, adminKeyDigest: Buffer | null): void {
  if (adminKeyDigest === null) {
    throw new ApiError("permission", "the admin API is disabled; set SEMANTIC_ADMIN_KEY to enable it");
  }
  const key = event.req.headers.get("x-admin-key");
  if (!key) throw new ApiError("authentication", "missing admin key: send `x-admin-key: KEY`");
  if (!matchesAny(key.trim(), [adminKeyDigest])) throw new ApiError("authentication", "invalid admin key");
}

/**
 * Reads the body up to the limit (413 beyond it, checked against Content-Length first and then while
 * reading, for chunked uploads) and parses it as JSON whatever the content type says: `curl -d` sends
 * form encoding by default, and a JSON API has nothing else to read.
 */
async function readJsonBody(event: H3Event, maxBytes: number): Promise<unknown> {
  // The rest of an oversized upload is never read: the 413 goes out with Connection: close and Node
  // drops the socket after it. Cancelling the stream instead would destroy the socket before the
  // response finishes, and listhen's http-shutdown then crashes the process on a null socket.
  const tooLarge = () => {
    event.res.headers.set("connection", "close");
    return new ApiError("request_too_large", `request body exceeds ${maxBytes} bytes (SEMANTIC_SERVER_MAX_BODY_MB)`);
  };
  const declared = Number(event.req.headers.get("content-length") ?? "NaN");
  if (declared > maxBytes) throw tooLarge();
  const stream = event.req.body;
  if (!stream) return undefined;

  const chunks: Uint8Array[] = [];
  let received = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    received += value.byteLength;
    if (received > maxBytes) {
      reader.releaseLock();
      throw tooLarge();
    }
    chunks.push(value);
  }
  if (received === 0) return undefined;
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ApiError("invalid_request", `request body is not valid JSON: ${(error as Error).message}`);
  }
}

/** The session id, from the X-Session-ID header, Claude Code's session header, or the body. */
function agentIdOf(event: H3Event, body: unknown): string | null {
  const header = event.req.headers.get("x-session-id") ?? event.req.headers.get("x-claude-code-session-id");
  if (header?.trim()) return header.trim();
  if (body && typeof body === "object" && "session_id" in body) {
    const sessionId = body.session_id;
    if (typeof sessionId === "string" && sessionId.trim() !== "") return sessionId.trim();
  }
  return null;
}
