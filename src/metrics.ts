/**
 * The Prometheus metrics of the user guide. One `Metrics` object per server, passed down to the code
 * that does the work (the HTTP edge counts requests, the engine counts tokens, agent memory counts
 * cache hits), so every figure moves when the event happens, not when /metrics is scraped.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  readonly registry: Registry;
  /** Finished HTTP requests, by method, endpoint (route pattern) and status code. */
  readonly requestsTotal: Counter<"method" | "endpoint" | "status">;
  /** Wall time of HTTP requests from arrival to the last byte sent (streams included). */
  readonly requestDuration: Histogram<"method" | "endpoint">;
  /** Agents holding a KV cache, by tier (hot = backend memory, warm = disk). */
  readonly activeAgents: Gauge<"tier">;
  /** Requests whose prompt reused cached KV, by the tier the reused tokens came from. */
  readonly cacheHits: Counter<"tier">;
  /** Requests whose prompt found nothing to reuse. */
  readonly cacheMisses: Counter;
  readonly tokensGenerated: Counter<"endpoint">;
  /** Time from the start of prefill to the last generated token of one request. */
  readonly generationDuration: Histogram<"endpoint">;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    requestsTotal: new Counter({
      name: "semantic_requests_total",
      help: "HTTP requests served, by method, endpoint and status code.",
      labelNames: ["method", "endpoint", "status"],
      registers,
    }),
    requestDuration: new Histogram({
      name: "semantic_request_duration_seconds",
      help: "HTTP request duration from arrival to the last byte sent, in seconds.",
      labelNames: ["method", "endpoint"],
      buckets: [0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    }),
    activeAgents: new Gauge({
      name: "semantic_active_agents",
      help: "Agents holding a KV cache, by tier (hot: backend memory, warm: disk).",
      labelNames: ["tier"],
      registers,
    }),
    cacheHits: new Counter({
      name: "semantic_cache_hits_total",
      help: "Requests that reused cached KV, by the tier the reused tokens came from.",
      labelNames: ["tier"],
      registers,
    }),
    cacheMisses: new Counter({
      name: "semantic_cache_misses_total",
      help: "Requests that found no cached KV to reuse.",
      registers,
    }),
    tokensGenerated: new Counter({
      name: "semantic_tokens_generated_total",
      help: "Tokens generated, by endpoint.",
      labelNames: ["endpoint"],
      registers,
    }),
    generationDuration: new Histogram({
      name: "semantic_generation_duration_seconds",
      help: "Time from the start of prefill to the last generated token of a request, in seconds.",
      labelNames: ["endpoint"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    }),
  };
}
