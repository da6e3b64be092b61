/**
 * What the protocols run a request on: the loaded model's tokenizer, the engine and the agent memory
 * behind it. Each protocol converts its request into a ChatRequest, asks `start` for the prompt and
 * the event stream, and renders those events in its own frames; everything a client can get wrong on
 * the way (a prompt too long, sampling out of range, a template that refuses the conversation, an
 * agent id that cannot be stored) comes back as an ApiError the protocol renders in its own shape.
 */
import { GenerationError, PromptRejectedError, type GenerationEvent, type TokenConstraint } from "../engine/events.js";
import type { Engine } from "../engine/engine.js";
import { samplingParams, SamplingError, type SamplingParams } from "../engine/sampling.js";
import type { Logger } from "../logging.js";
import type { AgentMemory } from "../memory/agent-memory.js";
import { InvalidAgentIdError, validateAgentId } from "../memory/persistence.js";
import type { Metrics } from "../metrics.js";
import { ChatTemplateError, type ModelTokenizer } from "../model/tokenizer.js";
import { GrammarError, UnsupportedSchemaError } from "../tools/grammar/index.js";
import type { ToolCallFormat, ToolCallParser } from "../tools/parsers/index.js";
import { NoToolFormatError, ToolPlanner } from "../tools/plan.js";
import { chatEvents, type ChatAnswer, type ChatEvent, type DoneChatEvent } from "../tools/tool-stream.js";
import type { ChatRequest, RequestScope } from "./chat.js";
import { renderPrompt } from "./conversation.js";
import { ApiError } from "./problem.js";

export interface RuntimeDefaults {
  maxTokens: number;
  temperature: number;
  /** Requests waiting for the engine beyond which new ones are turned away (0: no limit). */
  maxQueuedRequests: number;
}

export interface RuntimeParts {
  /** The loaded model's id (a repo id or a directory), listed by /v1/models. */
  modelId: string;
  tokenizer: ModelTokenizer;
  engine: Engine;
  memory: AgentMemory;
  /** How the model writes tool calls (from its family and chat template); null: it has no known format. */
  toolFormat: ToolCallFormat | null;
  defaults: RuntimeDefaults;
  metrics: Metrics;
  logger: Logger;
}

/** A started generation: the prompt as the model sees it, and the events as they come. */
export interface StartedGeneration {
  promptTokens: number;
  events: AsyncIterable<ChatEvent>;
}

/** Names of sampling parameters on the wire, for errors that name the field the client sent. */
export type SamplingFieldNames = Partial<Record<keyof SamplingParams, string>>;

export class ChatRuntime {
  readonly startedAt = Math.floor(Date.now() / 1000);
  private readonly tools: ToolPlanner;

  constructor(readonly parts: RuntimeParts) {
    this.tools = new ToolPlanner(parts.tokenizer, parts.toolFormat);
  }

  get modelId(): string {
    return this.parts.modelId;
  }

  get contextLimit(): number {
    return this.parts.engine.contextLimit;
  }

  /** The prompt's token ids as the model would see them (count_tokens counts these). */
  promptTokens(request: Pick<ChatRequest, "messages" | "tools" | "toolChoice">): number[] {
    const tools = request.toolChoice === "none" ? null : request.tools;
    return this.render(request.messages, tools);
  }

  private render(messages: ChatRequest["messages"], tools: ChatRequest["tools"] | null): number[] {
    try {
      return renderPrompt(this.parts.tokenizer, messages, tools, this.parts.toolFormat);
    } catch (error) {
      if (error instanceof ChatTemplateError) {
        throw new ApiError(
          "invalid_request",
          `the model's chat template cannot render this conversation: ${error.message}`,
          {
            param: "messages",
          },
        );
      }
      throw error;
    }
  }

  start(request: ChatRequest, scope: RequestScope, fieldNames: SamplingFieldNames = {}): StartedGeneration {
    const plan = this.planTools(request);
    const promptTokens = this.render(request.messages, plan.promptTools as ChatRequest["tools"] | null);
    return this.generate(promptTokens, request, scope, fieldNames, plan.parser, plan.constraint);
  }

  /** Generation from prompt token ids the caller made (the Agent API's raw-text prompts). */
  startTokens(
    promptTokens: number[],
    request: Pick<ChatRequest, "maxTokens" | "sampling" | "stop">,
    scope: RequestScope,
    fieldNames: SamplingFieldNames = {},
  ): StartedGeneration {
    return this.generate(promptTokens, request, scope, fieldNames, null, null);
  }

  private planTools(request: ChatRequest) {
    try {
      return this.tools.plan({
        tools: request.tools,
        toolChoice: request.toolChoice,
        responseSchema: request.responseSchema,
      });
    } catch (error) {
      if (error instanceof UnsupportedSchemaError) {
        const where = request.responseSchema !== null && request.tools.length === 0 ? "response_format" : "tools";
        throw new ApiError(
          "invalid_request",
          `${where}: the JSON schema keyword "${error.keyword}" is not supported by constrained decoding: ${error.message}`,
          { param: where },
        );
      }
      if (error instanceof GrammarError && !(error instanceof UnsupportedSchemaError)) {
        const where = request.responseSchema !== null && request.tools.length === 0 ? "response_format" : "tools";
        throw new ApiError("invalid_request", `${where}: ${error.message}`, { param: where });
      }
      if (error instanceof NoToolFormatError) {
        throw new ApiError("invalid_request", `tool_choice: ${error.message}`, { param: "tool_choice" });
      }
      throw error;
    }
  }

  private generate(
    promptTokens: number[],
    request: Pick<ChatRequest, "maxTokens" | "sampling" | "stop">,
    scope: RequestScope,
    fieldNames: SamplingFieldNames,
    parser: ToolCallParser | null,
    constraint: TokenConstraint | null,
  ): StartedGeneration {
    const { engine, defaults } = this.parts;
    if (scope.memory.agentId !== null) checkAgentId(scope.memory.agentId);
    const queued = engine.stats().waiting;
    if (defaults.maxQueuedRequests > 0 && queued >= defaults.maxQueuedRequests) {
      throw new ApiError("overloaded", `the server is overloaded: ${queued} requests are waiting; retry shortly`, {
        headers: { "retry-after": "2" },
      });
    }
    let sampling: SamplingParams;
    try {
      sampling = samplingParams(request.sampling, { temperature: defaults.temperature });
    } catch (error) {
      if (error instanceof SamplingError) {
        const name = fieldNames[error.field] ?? error.field;
        throw new ApiError("invalid_request", `${name}: ${error.message.replace(/^sampling parameter \w+/, name)}`, {
          param: name,
        });
      }
      throw error;
    }
    const started = performance.now();
    let events: AsyncIterable<GenerationEvent>;
    try {
      events = engine.generate({
        promptTokens,
        maxTokens: request.maxTokens ?? defaults.maxTokens,
        sampling,
        stop: request.stop,
        signal: scope.signal,
        memory: scope.memory,
        skipSpecialTokens: true,
        constraint: constraint ?? undefined,
      });
    } catch (error) {
      if (error instanceof PromptRejectedError) {
        throw new ApiError("invalid_request", error.message, { param: "messages" });
      }
      if (error instanceof GenerationError) throw new ApiError("unavailable", error.message);
      throw error;
    }
    return {
      promptTokens: promptTokens.length,
      events: chatEvents(this.measured(events, scope.endpoint, started), parser),
    };
  }

  /** Counts generated tokens and generation time per endpoint as the events pass. */
  private async *measured(
    events: AsyncIterable<GenerationEvent>,
    endpoint: string,
    started: number,
  ): AsyncIterable<GenerationEvent> {
    const { metrics } = this.parts;
    for await (const event of events) {
      if (event.type === "delta" && event.tokenIds.length > 0) {
        metrics.tokensGenerated.inc({ endpoint }, event.tokenIds.length);
      }
      if (event.type === "done") {
        metrics.generationDuration.observe({ endpoint }, (performance.now() - started) / 1000);
      }
      yield event;
    }
  }
}

function checkAgentId(agentId: string): void {
  try {
    validateAgentId(agentId, "session id");
  } catch (error) {
    if (error instanceof InvalidAgentIdError)
      throw new ApiError("invalid_request", error.message, { param: "session_id" });
    throw error;
  }
}

/** A whole answer, for the non-streaming responses: its text, its complete tool calls, how it ended. */
export async function collectAnswer(events: AsyncIterable<ChatEvent>): Promise<ChatAnswer> {
  let text = "";
  const toolCalls: ChatAnswer["toolCalls"] = [];
  let done: DoneChatEvent | null = null;
  try {
    for await (const event of events) {
      if (event.type === "text") text += event.text;
      else if (event.type === "tool_call_start") toolCalls[event.index] = { name: event.name, arguments: {} };
      else if (event.type === "tool_call_end") toolCalls[event.index]!.arguments = event.arguments;
      else if (event.type === "done") done = event;
    }
  } catch (error) {
    throw new ApiError("internal", `generation failed: ${(error as Error).message}`);
  }
  if (!done) throw new ApiError("internal", "generation ended without a result");
  return { text, toolCalls, done };
}

/** A runtime that may not be there yet: routes are mounted when the server listens, before the model loads. */
export class RuntimeSlot {
  private runtime: ChatRuntime | null = null;

  set(runtime: ChatRuntime): void {
    this.runtime = runtime;
  }

  require(): ChatRuntime {
    if (!this.runtime) {
      throw new ApiError("unavailable", "the model is still loading; retry in a few seconds", {
        headers: { "retry-after": "5" },
      });
    }
    return this.runtime;
  }
}
