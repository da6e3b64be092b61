/**
 * Which protocol a path speaks, and its error renderer. Paths follow the real APIs: Anthropic's
 * /v1/messages (and count_tokens), OpenAI's /v1/chat/completions and /v1/models; everything else
 * (the Agent API, health, status, admin) uses the plain shape.
 */
import { renderAnthropicError } from "./anthropic/errors.js";
import { renderPlainError } from "./agents/errors.js";
import { renderOpenAIError } from "./openai/errors.js";
import type { Problem, RenderedError } from "./problem.js";

export type Protocol = "anthropic" | "openai" | "plain";

export function protocolForPath(pathname: string): Protocol {
  if (pathname === "/v1/messages" || pathname.startsWith("/v1/messages/")) return "anthropic";
  if (
    pathname === "/v1/chat/completions" ||
    pathname === "/v1/completions" ||
    pathname === "/v1/embeddings" ||
    pathname === "/v1/models" ||
    pathname.startsWith("/v1/models/")
  ) {
    return "openai";
  }
  return "plain";
}

const RENDERERS: Record<Protocol, (problem: Problem) => RenderedError> = {
  anthropic: renderAnthropicError,
  openai: renderOpenAIError,
  plain: renderPlainError,
};

export function renderError(protocol: Protocol, problem: Problem): RenderedError {
  return RENDERERS[protocol](problem);
}

export { ApiError, type Problem, type ProblemKind } from "./problem.js";
