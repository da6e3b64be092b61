/**
 * What a generation request asks for and what it gets back: typed events the protocols turn into
 * their own frames. Nothing here knows which protocol asked.
 */
import type { MemoryScope } from "./kv-memory.js";
import type { SamplingParams } from "./sampling.js";

/**
 * A limit on which tokens may come next (constrained decoding: a tool call's JSON arguments, a JSON
 * response format). The sampler draws only from the tokens `mask` allows; end-of-turn tokens are
 * allowed only once the constraint is complete.
 */
export interface TokenConstraint {
  /** Bitset over token ids (bit i of word i >> 5): the tokens allowed next. */
  mask(): Uint32Array;
  /** Advance past a sampled token (always one the mask allowed). */
  accept(token: number): void;
}

export interface GenerationRequest {
  /** The rendered prompt's token ids. */
  promptTokens: readonly number[];
  /** Output tokens at most; generation also stops when the context is full. */
  maxTokens: number;
  sampling: SamplingParams;
  /** Stop strings: matched on text across token boundaries, never emitted. */
  stop?: readonly string[];
  /** Token ids that end the turn besides the model's own (e.g. a template's end-of-turn). */
  stopTokenIds?: readonly number[];
  /** Aborting (a disconnected client) cancels the sequence and frees its KV blocks at once. */
  signal?: AbortSignal;
  /** The agent and tenant whose cached KV may be reused (and kept); none: nothing is cached. */
  memory?: MemoryScope;
  /** Keep generating through end-of-turn tokens (benchmarks, as vLLM's ignore_eos). */
  ignoreEos?: boolean;
  /** Special tokens are left out of the text (they still count as generated tokens). */
  skipSpecialTokens?: boolean;
  /** Constrained decoding: only tokens the constraint allows are sampled. */
  constraint?: TokenConstraint;
}

/**
 * Why generation ended: `stop` (an end-of-turn token), `stop_sequence` (a stop string),
 * `length` (max_tokens), `context_length` (the context window is full), `cancelled`.
 */
export type FinishReason = "stop" | "stop_sequence" | "length" | "context_length" | "cancelled";

export interface Usage {
  promptTokens: number;
  /** Prompt tokens whose KV came from memory instead of prefill. */
  cachedTokens: number;
  generatedTokens: number;
}

export interface Timings {
  /** From submission to the first prefill step that included this request. */
  queuedMs: number;
  /** From submission to the first generated token. */
  timeToFirstTokenMs: number;
  /** From the first to the last generated token. */
  decodeMs: number;
  totalMs: number;
}

export type GenerationEvent =
  | {
      /**
       * First, once the cached prefix is known (before prefill starts): protocols that report usage
       * up front (Anthropic's message_start) read it here.
       */
      type: "prompt";
      promptTokens: number;
      /** Prompt tokens whose KV came from memory; only the rest is prefilled. */
      cachedTokens: number;
    }
  | {
      type: "delta";
      /** New text, whole UTF-8 characters only; may be empty while text is held back (a possible stop string). */
      text: string;
      /** Token ids generated since the previous event. */
      tokenIds: number[];
    }
  | {
      type: "done";
      finishReason: FinishReason;
      /** The stop string that matched, for `stop_sequence`. */
      stopSequence: string | null;
      usage: Usage;
      timings: Timings;
    };

/** The prompt cannot be served: too long for the context window, or empty. Nothing was computed. */
export class PromptRejectedError extends Error {
  override name = "PromptRejectedError";
}

/** Generation failed part-way (e.g. the device was lost); the engine goes on serving others. */
export class GenerationError extends Error {
  override name = "GenerationError";
}
