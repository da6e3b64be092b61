/**
 * The protocol routes: Anthropic Messages, OpenAI Chat Completions, the model list, the Agent API and
 * the OpenAPI document. Each handler takes what the edge learned about the request (body, session,
 * tenant, abort signal), calls its protocol, and turns the protocol's answer into HTTP: a JSON body
 * or a server-sent event stream. Until the model is loaded, generation routes answer 503 with
 * Retry-After (the RuntimeSlot says so).
 */
import { getRouterParam, type H3, type H3Event } from "h3";
import type { ChatRuntime, RuntimeSlot } from "../protocols/runtime.js";
import type { RequestScope } from "../protocols/chat.js";
import { countTokens, createMessage } from "../protocols/anthropic/messages.js";
import { createChatCompletion } from "../protocols/openai/chat-completions.js";
import { listModels, retrieveModel, type ModelCatalog } from "../protocols/models.js";
import {
  agentStats,
  createAgent,
  deleteAgent,
  generateForAgent,
  getAgent,
  listAgents,
} from "../protocols/agents/agents.js";
import { openApiDocument } from "../protocols/openapi.js";
import type { ProtocolResponse } from "../protocols/response.js";
import { nodeFacts, requestInfo } from "./edge.js";
import { sseResponse, sseStream } from "./sse.js";

export interface RouteOptions {
  runtime: RuntimeSlot;
  /** Extra names /v1/models lists (SEMANTIC_MODEL_ALIASES). */
  modelAliases: readonly string[];
  /** Quiet time after which a stream sends its heartbeat frame. */
  heartbeatMs?: number;
}

export function mountProtocolRoutes(app: H3, options: RouteOptions): void {
  const { runtime } = options;
  const respond = (event: H3Event, answer: ProtocolResponse): Response => {
    const headers = new Headers(event.res.headers);
    if (answer.kind === "stream") {
      return sseResponse(sseStream(answer.frames, answer.heartbeat, options.heartbeatMs), headers);
    }
    headers.set("content-type", "application/json");
    for (const [name, value] of Object.entries(answer.headers ?? {})) headers.set(name, value);
    return new Response(JSON.stringify(answer.body), { status: answer.status ?? 200, headers });
  };
  const scopeOf = (event: H3Event, agentId = requestInfo(event).agentId): RequestScope => {
    const info = requestInfo(event);
    return {
      memory: { agentId, tenant: info.tenant },
      signal: info.signal,
      endpoint: nodeFacts(event).endpoint ?? "unmatched",
    };
  };
  const catalog = (live: ChatRuntime): ModelCatalog => ({
    modelId: live.modelId,
    aliases: options.modelAliases,
    createdAt: live.startedAt,
  });
  const isAnthropicClient = (event: H3Event) => event.req.headers.has("anthropic-version");
  const agentIdParam = (event: H3Event) => getRouterParam(event, "agent_id", { decode: true }) ?? "";

  app.post("/v1/messages", async (event) =>
    respond(event, await createMessage(runtime.require(), requestInfo(event).body, scopeOf(event))),
  );
  app.post("/v1/messages/count_tokens", (event) =>
    respond(event, countTokens(runtime.require(), requestInfo(event).body)),
  );
  app.post("/v1/chat/completions", async (event) =>
    respond(event, await createChatCompletion(runtime.require(), requestInfo(event).body, scopeOf(event))),
  );
  app.get("/v1/models", (event) => respond(event, listModels(catalog(runtime.require()), isAnthropicClient(event))));
  app.get("/v1/models/:model_id", (event) =>
    respond(
      event,
      retrieveModel(
        catalog(runtime.require()),
        getRouterParam(event, "model_id", { decode: true }) ?? "",
        isAnthropicClient(event),
      ),
    ),
  );

  const memoryOf = () => runtime.require().parts.memory;
  app.post("/v1/agents", async (event) =>
    respond(event, await createAgent(memoryOf(), requestInfo(event).tenant, requestInfo(event).body)),
  );
  app.get("/v1/agents", async (event) => respond(event, await listAgents(memoryOf(), requestInfo(event).tenant)));
  app.get("/v1/agents/stats", (event) => respond(event, agentStats(memoryOf())));
  app.get("/v1/agents/:agent_id", async (event) =>
    respond(event, await getAgent(memoryOf(), requestInfo(event).tenant, agentIdParam(event))),
  );
  app.delete("/v1/agents/:agent_id", async (event) =>
    respond(event, await deleteAgent(memoryOf(), requestInfo(event).tenant, agentIdParam(event))),
  );
  app.post("/v1/agents/:agent_id/generate", async (event) => {
    const agentId = agentIdParam(event);
    const { signal, endpoint } = scopeOf(event, agentId);
    const answer = await generateForAgent(runtime.require(), agentId, requestInfo(event).body, {
      tenant: requestInfo(event).tenant,
      signal,
      endpoint,
    });
    return respond(event, answer);
  });

  app.get("/openapi.json", () => openApiDocument());
}
