/** OpenAI's error shape: `{"error":{"message":"...","type":"...","param":...,"code":...}}`. */
import { DEFAULT_STATUS, type Problem, type ProblemKind, type RenderedError } from "../problem.js";

// Type and code as OpenAI's own API sends them for the same situation.
const SHAPES: Record<ProblemKind, { type: string; code: string | null }> = {
  invalid_request: { type: "invalid_request_error", code: null },
  authentication: { type: "invalid_request_error", code: "invalid_api_key" },
  permission: { type: "invalid_request_error", code: "permission_denied" },
  not_found: { type: "invalid_request_error", code: "not_found" },
  conflict: { type: "invalid_request_error", code: "conflict" },
  request_too_large: { type: "invalid_request_error", code: "request_too_large" },
  rate_limit: { type: "requests", code: "rate_limit_exceeded" },
  overloaded: { type: "server_error", code: "overloaded" },
  unavailable: { type: "server_error", code: "service_unavailable" },
  internal: { type: "server_error", code: null },
};

/** The error body, also the payload of a streamed error frame. */
export function openAIErrorBody(kind: ProblemKind, message: string, param?: string) {
  const { type, code } = SHAPES[kind];
  return { error: { message, type, param: param ?? null, code } };
}

export function renderOpenAIError(problem: Problem): RenderedError {
  return { status: DEFAULT_STATUS[problem.kind], body: openAIErrorBody(problem.kind, problem.message, problem.param) };
}
