/** The metric names the user guide promises; tests check them against /metrics, never against src/metrics.ts. */
export const USER_GUIDE_METRICS = [
  "semantic_requests_total",
  "semantic_request_duration_seconds",
  "semantic_active_agents",
  "semantic_cache_hits_total",
  "semantic_cache_misses_total",
  "semantic_tokens_generated_total",
  "semantic_generation_duration_seconds",
];
