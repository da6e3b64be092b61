/** Anthropic's error shape: `{"type":"error","error":{"type":"..._error","message":"..."}}`. */
import { DEFAULT_STATUS, type Problem, type ProblemKind, type RenderedError } from "../problem.js";

const TYPES: Record<ProblemKind, string> = {
  invalid_request: "invalid_request_error",
  authentication: "authentication_error",
  permission: "permission_error",
  not_found: "not_found_error",
  conflict: "invalid_request_error",
  request_too_large: "request_too_large",
  rate_limit: "rate_limit_error",
  overloaded: "overloaded_error",
  unavailable: "api_error",
  internal: "api_error",
};

/** The error body, also the payload of a streamed `error` event. */
export function anthropicErrorBody(kind: ProblemKind, message: string): { type: "error"; error: object } {
  return { type: "error", error: { type: TYPES[kind], message } };
}

export function renderAnthropicError(problem: Problem): RenderedError {
  // Anthropic answers an overloaded API with its own status code, 529.
  const status = problem.kind === "overloaded" ? 529 : DEFAULT_STATUS[problem.kind];
  return { status, body: anthropicErrorBody(problem.kind, problem.message) };
}
