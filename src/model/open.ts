/**
 * Everything `serve` needs to have a model ready: the backend, the model directory (a local path or a
 * Hugging Face repo id found in — or downloaded into — the hub cache), its tokenizer and chat template,
 * the weights on the backend.
 * Each step's failure is one line that names what to fix.
 */
import type { Backend } from "../../backends/contract.js";
import { createBackend, type BackendName } from "../../backends/registry.js";
import type { Logger } from "../logging.js";
import { resolveModelDirectory } from "./hub.js";
import { loadModel, type LoadedModel } from "./load.js";
import { loadTokenizer, type ModelTokenizer } from "./tokenizer.js";

export interface OpenedModel extends LoadedModel {
  backend: Backend;
  /** The id the user asked for (repo id or path). */
  id: string;
  directory: string;
  tokenizer: ModelTokenizer;
}

export interface OpenModelOptions {
  model: string;
  backend: BackendName | "auto";
  logger: Logger;
  /** Progress bars for downloads and long loads (stderr by default). */
  progressStream?: NodeJS.WriteStream | null;
}

export async function openModel({
  model,
  backend: requested,
  logger,
  progressStream,
}: OpenModelOptions): Promise<OpenedModel> {
  const backend = await createBackend(requested);
  try {
    logger.info(`backend ${backend.name}: ${backend.deviceDescription}`);
    const directory = await resolveModelDirectory(model, progressStream ? { progressStream } : {});
    logger.debug(`model ${model} resolved to ${directory}`);
    // The tokenizer first: it is quick, and a broken one should fail before the weights stream in.
    const tokenizer = await loadTokenizer(directory);
    if (!tokenizer.hasChatTemplate) {
      logger.warning(`model ${model} has no chat template: chat requests cannot be rendered for it`);
    }
    const loaded = await loadModel(directory, backend, { progressStream });
    const { config } = loaded;
    logger.info(
      `model ${model} loaded in ${loaded.loadSeconds.toFixed(2)} s: ${config.architecture}, ${config.layers} layers, ` +
        `${(loaded.bytes / 1e6).toFixed(1)} MB of weights` +
        (config.quantization ? `, ${config.quantization.bits}-bit` : ""),
    );
    if (loaded.unusedTensors.length > 0) {
      logger.debug(`tensors the ${config.architecture} architecture does not use: ${loaded.unusedTensors.join(", ")}`);
    }
    logger.debug(
      `tokenizer: ${tokenizer.vocabSize} tokens, stop ids ${[...tokenizer.eosTokenIds].join(", ")}, bos ${tokenizer.bosTokenId}`,
    );
    return { ...loaded, backend, id: model, directory, tokenizer };
  } catch (error) {
    backend.dispose();
    throw error;
  }
}
