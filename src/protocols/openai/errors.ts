/** OpenAI's error shape: `{"error":{"message":"...","type":"...","param":...,"code":...}}`. */
import { DEFAULT_STATUS, type Problem, type ProblemKind, type RenderedError } from "../problem.js";

// Type and code as OpenAI's own API sends them for the same situation.
const SHAPES: Record<ProblemKind, { type: string; code: string | null }> = {
  invalid_request: { type: "invalid_request_error", code: null },
  authentication: { type: "invalid_request_error", code: "invalid_api_key" },
  permission: { type: "invalid_request_error", code: "permission_denied" },
  not_found: { type: "invalid_request_error", code: "not_found" },
  request_too_large: { type: "invalid_request_error", code: "request_too_large" },
  rate_limit: { type: "requests", code: "rate_limit_exceeded" },
  overloaded: { type: "server_error", code: "overloaded" },
  unavailable: { type: "server_error", code: "service_unavailable" },
  internal: { type: "server_error", code: null },
};

export function renderOpenAIError(problem: Problem): RenderedError {
  const { type, code } = SHAPES[problem.kind];
  return {
    status: DEFAULT_STATUS[problem.kind],
    body: { error: { message: problem.message, type, param: problem.param ?? null, code } },
  };
}
