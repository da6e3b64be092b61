/**
 * The direct Agent API: agents as first-class objects over agent memory.
 *
 *   POST   /v1/agents                {agent_id}                 → 201 the agent (409 if it exists)
 *   GET    /v1/agents                                           → {agents: [...], total}
 *   GET    /v1/agents/stats                                     → tiers, bytes, hit rates
 *   GET    /v1/agents/{id}                                      → the agent (404 if unknown)
 *   POST   /v1/agents/{id}/generate  {prompt | messages, max_tokens, …}
 *                                     → {text, tokens_generated, cache_size_tokens, …}
 *   DELETE /v1/agents/{id}                                      → {agent_id, deleted: true} (hot and disk)
 *
 * `prompt` is raw text, tokenized as is (with the tokenizer's BOS) — the agent resends its whole
 * context and only the new tail is prefilled; `messages` is a chat rendered through the model's
 * template, as the other protocols do. Agents are per tenant (API key), like every cache.
 */
import { z } from "zod";
import type { AgentInfo, AgentMemory } from "../../memory/agent-memory.js";
import { InvalidAgentIdError, validateAgentId } from "../../memory/persistence.js";
import type { ChatMessage, RequestScope } from "../chat.js";
import { ApiError } from "../problem.js";
import { json, type ProtocolResponse } from "../response.js";
import { collectAnswer, type ChatRuntime, type SamplingFieldNames } from "../runtime.js";
import { fieldError, parseRequest } from "../validation.js";

export const CreateAgentRequest = z.object({ agent_id: z.string().min(1) });

export const AgentMessage = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string(),
});

export const GenerateRequest = z
  .object({
    prompt: z.string().min(1).optional(),
    messages: z.array(AgentMessage).min(1).optional(),
    max_tokens: z.number().int().min(1).optional(),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().gt(0).max(1).optional(),
    top_k: z.number().int().min(0).optional(),
    min_p: z.number().min(0).max(1).optional(),
    seed: z.number().int().optional(),
    repetition_penalty: z.number().gt(0).optional(),
    stop: z.array(z.string()).optional(),
  })
  .refine((body) => (body.prompt === undefined) !== (body.messages === undefined), {
    message: "send either `prompt` (raw text) or `messages` (a chat), not both and not neither",
    path: ["prompt"],
  });

const SAMPLING_FIELDS: SamplingFieldNames = {
  temperature: "temperature",
  topP: "top_p",
  topK: "top_k",
  minP: "min_p",
  seed: "seed",
  repetitionPenalty: "repetition_penalty",
};

export function agentJson(agent: AgentInfo) {
  return {
    agent_id: agent.agentId,
    tier: agent.tier,
    cache_size_tokens: agent.tokens,
    cache_bytes: agent.bytes,
    last_used: new Date(agent.lastUsed).toISOString(),
  };
}

function checkedId(agentId: string, param = "agent_id"): string {
  try {
    validateAgentId(agentId);
  } catch (error) {
    if (error instanceof InvalidAgentIdError) throw fieldError(param, error.message);
    throw error;
  }
  return agentId;
}

function existing(memory: AgentMemory, tenant: string, agentId: string): AgentInfo {
  const agent = memory.get(tenant, checkedId(agentId));
  if (!agent) {
    throw new ApiError("not_found", `no agent "${agentId}"; create it with POST /v1/agents {"agent_id": ...}`);
  }
  return agent;
}

export async function createAgent(memory: AgentMemory, tenant: string, body: unknown): Promise<ProtocolResponse> {
  const { agent_id: agentId } = parseRequest(CreateAgentRequest, body);
  // An agent whose first turn (through a chat API) is still settling exists already.
  await memory.settledAgent(tenant, checkedId(agentId));
  if (!memory.create(tenant, agentId)) {
    throw new ApiError("conflict", `agent "${agentId}" already exists`);
  }
  return json(agentJson(memory.get(tenant, agentId)!), 201);
}

export async function listAgents(memory: AgentMemory, tenant: string): Promise<ProtocolResponse> {
  await memory.settledTenant(tenant);
  const agents = memory.list(tenant).map(agentJson);
  return json({ agents, total: agents.length });
}

export async function getAgent(memory: AgentMemory, tenant: string, agentId: string): Promise<ProtocolResponse> {
  // Right after an answer the agent's last token is still being written: describe it once it is.
  await memory.settledAgent(tenant, checkedId(agentId));
  return json(agentJson(existing(memory, tenant, agentId)));
}

export async function deleteAgent(memory: AgentMemory, tenant: string, agentId: string): Promise<ProtocolResponse> {
  await memory.settledAgent(tenant, checkedId(agentId));
  existing(memory, tenant, agentId);
  await memory.delete(tenant, agentId);
  return json({ agent_id: agentId, deleted: true });
}

export function agentStats(memory: AgentMemory): ProtocolResponse {
  const stats = memory.stats();
  const hits = stats.hits.hot + stats.hits.warm + stats.hits.shared;
  const rate = (count: number) => (stats.requests === 0 ? 0 : count / stats.requests);
  return json({
    hot_agents: stats.hotAgents,
    warm_agents: stats.warmAgents,
    hot_bytes: stats.hotBytes,
    warm_bytes: stats.warmBytes,
    requests: stats.requests,
    hits: { hot: stats.hits.hot, warm: stats.hits.warm, shared: stats.hits.shared, total: hits },
    misses: stats.misses,
    hit_rate: rate(hits),
    hit_rates: { hot: rate(stats.hits.hot), warm: rate(stats.hits.warm), shared: rate(stats.hits.shared) },
    prompt_tokens: stats.promptTokens,
    reused_tokens: stats.reusedTokens,
    token_reuse_rate: stats.promptTokens === 0 ? 0 : stats.reusedTokens / stats.promptTokens,
    reloads: stats.reloads,
    reload_bytes: stats.reloadBytes,
    reload_ms: stats.reloadMs,
    reload_import_ms: stats.reloadImportMs,
    reload_open_ms: stats.reloadOpenMs,
    reload_read_wait_ms: stats.reloadReadWaitMs,
  });
}

export async function generateForAgent(
  runtime: ChatRuntime,
  agentId: string,
  body: unknown,
  scope: Omit<RequestScope, "memory"> & { tenant: string },
): Promise<ProtocolResponse> {
  const { memory, tokenizer } = runtime.parts;
  await memory.settledAgent(scope.tenant, checkedId(agentId));
  existing(memory, scope.tenant, agentId);
  const request = parseRequest(GenerateRequest, body);
  const chat = {
    maxTokens: request.max_tokens ?? null,
    sampling: {
      temperature: request.temperature,
      topP: request.top_p,
      topK: request.top_k,
      minP: request.min_p,
      seed: request.seed,
      repetitionPenalty: request.repetition_penalty,
    },
    stop: request.stop ?? [],
  };
  const memoryScope = { agentId, tenant: scope.tenant };
  const requestScope: RequestScope = { memory: memoryScope, signal: scope.signal, endpoint: scope.endpoint };
  const generation =
    request.prompt !== undefined
      ? runtime.startTokens(tokenizer.encode(request.prompt), chat, requestScope, SAMPLING_FIELDS)
      : runtime.start(
          {
            model: runtime.modelId,
            messages: request.messages as ChatMessage[],
            tools: [],
            toolChoice: "none",
            responseSchema: null,
            ...chat,
          },
          requestScope,
          SAMPLING_FIELDS,
        );
  const { text, done } = await collectAnswer(generation.events);
  const { usage } = done;
  return json({
    agent_id: agentId,
    text,
    finish_reason: done.finishReason,
    tokens_generated: usage.generatedTokens,
    prompt_tokens: usage.promptTokens,
    cached_tokens: usage.cachedTokens,
    // The agent's KV covers the prompt and every generated token once the last one's row has run,
    // right after this answer (Engine.beginSettle; a lookup of the agent waits for that row). Where
    // the row is given up (no free block, a failed step, a shutdown) it holds one token less.
    cache_size_tokens: usage.promptTokens + usage.generatedTokens,
  });
}
