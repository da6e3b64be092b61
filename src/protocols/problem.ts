/**
 * What went wrong, independent of protocol. Each protocol renders a Problem in its own error shape
 * (anthropic/errors.ts, openai/errors.ts, agents/errors.ts); the HTTP edge picks the protocol from
 * the path, so a client always gets an error its SDK can parse.
 */
export type ProblemKind =
  | "invalid_request"
  | "authentication"
  | "permission"
  | "not_found"
  | "conflict"
  | "request_too_large"
  | "rate_limit"
  | "overloaded"
  | "unavailable"
  | "internal";

export interface Problem {
  kind: ProblemKind;
  message: string;
  /** The offending request field, for OpenAI's `param` and for messages that name it. */
  param?: string;
}

export interface RenderedError {
  status: number;
  body: unknown;
}

/** A Problem thrown through the layers; carries extra response headers such as Retry-After. */
export class ApiError extends Error implements Problem {
  override name = "ApiError";
  constructor(
    readonly kind: ProblemKind,
    message: string,
    readonly options: { param?: string; headers?: Record<string, string> } = {},
  ) {
    super(message);
  }
  get param(): string | undefined {
    return this.options.param;
  }
}

export const DEFAULT_STATUS: Record<ProblemKind, number> = {
  invalid_request: 400,
  authentication: 401,
  permission: 403,
  not_found: 404,
  conflict: 409,
  request_too_large: 413,
  rate_limit: 429,
  overloaded: 503,
  unavailable: 503,
  internal: 500,
};
