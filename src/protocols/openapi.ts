/**
 * /openapi.json: every route, with request bodies generated from the same zod schemas that validate
 * them (so the document cannot drift from what the server accepts). OpenAPI 3.1, whose schema dialect
 * is JSON Schema 2020-12, zod's default target.
 */
import { z } from "zod";
import { VERSION } from "../version.js";
import { CreateAgentRequest, GenerateRequest } from "./agents/agents.js";
import { CountTokensRequest, MessagesRequest } from "./anthropic/schema.js";
import { ChatCompletionRequest } from "./openai/schema.js";

type Operation = {
  summary: string;
  tags: string[];
  requestBody?: z.ZodType;
  /** Status → description. */
  responses: Record<string, string>;
  stream?: boolean;
};

const ERRORS = { "400": "invalid request (the error names the field)", "401": "missing or invalid API key" };
const AGENT_ID = { name: "agent_id", in: "path", required: true, schema: { type: "string" } };

const ROUTES: Record<string, Record<string, Operation>> = {
  "/v1/messages": {
    post: {
      summary: "Anthropic Messages API (stream: true for server-sent events)",
      tags: ["anthropic"],
      requestBody: MessagesRequest,
      responses: { "200": "a Message, or its event stream", ...ERRORS, "529": "overloaded" },
      stream: true,
    },
  },
  "/v1/messages/count_tokens": {
    post: {
      summary: "Count the prompt's tokens with the model's chat template",
      tags: ["anthropic"],
      requestBody: CountTokensRequest,
      responses: { "200": "{input_tokens}", ...ERRORS },
    },
  },
  "/v1/chat/completions": {
    post: {
      summary: "OpenAI Chat Completions API (stream: true for server-sent events)",
      tags: ["openai"],
      requestBody: ChatCompletionRequest,
      responses: { "200": "a chat.completion, or chat.completion.chunk events", ...ERRORS, "503": "overloaded" },
      stream: true,
    },
  },
  "/v1/models": {
    get: {
      summary: "Models served (OpenAI's list shape; Anthropic's for clients sending anthropic-version)",
      tags: ["openai", "anthropic"],
      responses: { "200": "the model list" },
    },
  },
  "/v1/models/{model_id}": {
    get: {
      summary: "One served model",
      tags: ["openai", "anthropic"],
      responses: { "200": "the model", "404": "unknown" },
    },
  },
  "/v1/agents": {
    get: {
      summary: "List agents (tier, tokens, bytes, last used)",
      tags: ["agents"],
      responses: { "200": "{agents, total}" },
    },
    post: {
      summary: "Create an agent",
      tags: ["agents"],
      requestBody: CreateAgentRequest,
      responses: { "201": "the agent", "409": "it already exists", ...ERRORS },
    },
  },
  "/v1/agents/stats": {
    get: {
      summary: "Agent memory statistics: tiers, bytes, hit rates",
      tags: ["agents"],
      responses: { "200": "the statistics" },
    },
  },
  "/v1/agents/{agent_id}": {
    get: { summary: "One agent", tags: ["agents"], responses: { "200": "the agent", "404": "unknown agent" } },
    delete: {
      summary: "Delete an agent from memory and disk",
      tags: ["agents"],
      responses: { "200": "{agent_id, deleted}", "404": "unknown agent" },
    },
  },
  "/v1/agents/{agent_id}/generate": {
    post: {
      summary: "Generate for an agent from its whole context; only the uncached tail is prefilled",
      tags: ["agents"],
      requestBody: GenerateRequest,
      responses: { "200": "{text, tokens_generated, cache_size_tokens, …}", "404": "unknown agent", ...ERRORS },
    },
  },
  "/health": {
    get: { summary: "Liveness", tags: ["operations"], responses: { "200": "healthy", "503": "unhealthy" } },
  },
  "/health/ready": {
    get: {
      summary: "Readiness (200 once the model is loaded)",
      tags: ["operations"],
      responses: { "200": "ready", "503": "not ready" },
    },
  },
  "/status": {
    get: { summary: "Server, model, agent and memory status", tags: ["operations"], responses: { "200": "status" } },
  },
  "/metrics": {
    get: { summary: "Prometheus metrics", tags: ["operations"], responses: { "200": "text exposition format" } },
  },
};

let cached: object | null = null;

export function openApiDocument(): object {
  cached ??= {
    openapi: "3.1.0",
    info: { title: "agent-memory", version: VERSION },
    components: {
      securitySchemes: {
        apiKey: { type: "apiKey", in: "header", name: "x-api-key" },
        bearer: { type: "http", scheme: "bearer" },
      },
    },
    security: [{ apiKey: [] }, { bearer: [] }, {}],
    paths: Object.fromEntries(
      Object.entries(ROUTES).map(([path, operations]) => [
        path,
        Object.fromEntries(
          Object.entries(operations).map(([method, operation]) => [method, describe(path, operation)]),
        ),
      ]),
    ),
  };
  return cached;
}

function describe(path: string, operation: Operation): object {
  const responses = Object.fromEntries(
    Object.entries(operation.responses).map(([status, description]) => {
      const content: Record<string, object> = { "application/json": {} };
      if (status === "200" && operation.stream) content["text/event-stream"] = {};
      return [status, { description, content }];
    }),
  );
  return {
    summary: operation.summary,
    tags: operation.tags,
    ...(path.includes("{agent_id}") ? { parameters: [AGENT_ID] } : {}),
    ...(path.includes("{model_id}")
      ? { parameters: [{ name: "model_id", in: "path", required: true, schema: { type: "string" } }] }
      : {}),
    ...(operation.requestBody
      ? {
          requestBody: {
            required: true,
            content: {
              "application/json": {
                schema: z.toJSONSchema(operation.requestBody, { io: "input", unrepresentable: "any" }),
              },
            },
          },
        }
      : {}),
    responses,
  };
}
