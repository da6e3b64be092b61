/**
 * GET /v1/models and /v1/models/{id}: the loaded model and its configured aliases, in OpenAI's list
 * shape, or in Anthropic's when the client is an Anthropic SDK (it always sends anthropic-version).
 * Every name is served by the one loaded model.
 */
import { ApiError } from "./problem.js";
import { json, type ProtocolResponse } from "./response.js";

export interface ModelCatalog {
  modelId: string;
  aliases: readonly string[];
  /** Unix seconds the model was loaded. */
  createdAt: number;
}

const names = (catalog: ModelCatalog) => [...new Set([catalog.modelId, ...catalog.aliases])];

function openAIModel(id: string, catalog: ModelCatalog) {
  return { id, object: "model", created: catalog.createdAt, owned_by: "agent-memory" };
}

function anthropicModel(id: string, catalog: ModelCatalog) {
  return {
    type: "model",
    id,
    display_name: id === catalog.modelId ? id : `${id} (served by ${catalog.modelId})`,
    created_at: new Date(catalog.createdAt * 1000).toISOString(),
  };
}

export function listModels(catalog: ModelCatalog, anthropicClient: boolean): ProtocolResponse {
  const ids = names(catalog);
  if (anthropicClient) {
    return json({
      data: ids.map((id) => anthropicModel(id, catalog)),
      has_more: false,
      first_id: ids[0] ?? null,
      last_id: ids.at(-1) ?? null,
    });
  }
  return json({ object: "list", data: ids.map((id) => openAIModel(id, catalog)) });
}

export function retrieveModel(catalog: ModelCatalog, id: string, anthropicClient: boolean): ProtocolResponse {
  if (!names(catalog).includes(id)) {
    throw new ApiError("not_found", `model "${id}" is not served here; GET /v1/models lists the names that are`);
  }
  return json(anthropicClient ? anthropicModel(id, catalog) : openAIModel(id, catalog));
}
