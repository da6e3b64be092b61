/** The Agent API's (and every other route's) plain error shape: `{"error":{"type":"...","message":"..."}}`. */
import { DEFAULT_STATUS, type Problem, type RenderedError } from "../problem.js";

export function renderPlainError(problem: Problem): RenderedError {
  const error: Record<string, string> = { type: problem.kind, message: problem.message };
  if (problem.param !== undefined) error.param = problem.param;
  return { status: DEFAULT_STATUS[problem.kind], body: { error } };
}
