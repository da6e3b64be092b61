/**
 * Validation at the edge: a request body is parsed with its protocol's zod schema, and the first
 * problem becomes a 400 that names the field as a dotted path (`messages.2.content.0.text`), which
 * is also OpenAI's `param`.
 */
import type { z } from "zod";
import { ApiError } from "./problem.js";

export function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((key) => String(key)).join(".");
}

export function parseRequest<Schema extends z.ZodType>(schema: Schema, body: unknown): z.output<Schema> {
  if (body === undefined) throw new ApiError("invalid_request", "the request needs a JSON body");
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ApiError("invalid_request", "the request body must be a JSON object");
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = fieldPath(issue.path);
  throw new ApiError("invalid_request", param === "" ? issue.message : `${param}: ${describeIssue(issue)}`, {
    param: param === "" ? undefined : param,
  });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys") return `unknown field(s): ${issue.keys.join(", ")}`;
  return issue.message;
}

/** A client error about one field, in the shape parseRequest produces. */
export function fieldError(param: string, message: string): ApiError {
  return new ApiError("invalid_request", `${param}: ${message}`, { param });
}
