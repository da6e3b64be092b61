/**
 * One request inside the engine: its tokens, where it stands (prefilling, decoding, finished), the
 * text pipeline that turns generated ids into events (detokenizer → stop matcher), and the channel
 * those events travel through to the consumer's `for await`.
 */
import type { SequenceId } from "../../backends/kv-paging.js";
import { StreamingDetokenizer } from "../model/detokenizer.js";
import type { ModelTokenizer } from "../model/tokenizer.js";
import type { FinishReason, GenerationEvent, GenerationRequest } from "./events.js";
import { SequenceSampler } from "./sampling.js";
import { StopMatcher } from "./stop.js";

/** An unbounded single-consumer queue of events, ending with `done` or an error. */
export class EventChannel implements AsyncIterable<GenerationEvent> {
  private readonly queued: GenerationEvent[] = [];
  private failure: Error | null = null;
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(private readonly onAbandon: () => void) {}

  push(event: GenerationEvent): void {
    if (this.closed) return;
    this.queued.push(event);
    if (event.type === "done") this.closed = true;
    this.wake?.();
  }

  fail(error: Error): void {
    if (this.closed) return;
    this.failure = error;
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<GenerationEvent> {
    let finished = false;
    try {
      for (;;) {
        const event = this.queued.shift();
        if (event) {
          // A consumer that stops at `done` has not abandoned anything (a finished request may still
          // be settling its agent's cache, which a cancel would cut short).
          if (event.type === "done") finished = true;
          yield event;
          if (finished) return;
          continue;
        }
        if (this.failure) {
          finished = true;
          throw this.failure;
        }
        if (this.closed) {
          finished = true;
          return;
        }
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
      }
    } finally {
      // The consumer stopped early (break, an exception, a closed stream): cancel the work.
      if (!finished) this.onAbandon();
    }
  }
}

/**
 * "settle": the request has ended (its `done` is sent) and one more row writes its last generated
 * token's K/V before the agent's cache goes back to the memory (see settle.ts).
 */
export type Phase = "waiting" | "prefill" | "decode" | "settle" | "finished";

export class Sequence {
  phase: Phase = "waiting";
  /** Set by the scheduler once KV blocks are assigned. */
  kvSequence: SequenceId | null = null;
  /** Prompt tokens whose K/V are in the cache (prefilled or reused). */
  prefilled = 0;
  readonly generated: number[] = [];
  cancelled = false;
  /** The sequence ended in an error: its KV is not to be trusted or kept. */
  failed = false;
  finishReason: FinishReason | null = null;
  readonly sampler: SequenceSampler;
  readonly submittedAt = performance.now();
  /** Prompt tokens whose K/V came from memory. */
  cachedTokens = 0;
  firstScheduledAt: number | null = null;
  firstTokenAt: number | null = null;
  lastTokenAt: number | null = null;
  private readonly detokenizer: StreamingDetokenizer;
  private readonly stopMatcher: StopMatcher;
  private readonly stopTokens: ReadonlySet<number>;
  private pendingIds: number[] = [];

  constructor(
    readonly id: number,
    readonly request: GenerationRequest,
    tokenizer: ModelTokenizer,
    /** Most tokens (prompt + output) this sequence may hold. */
    readonly contextLimit: number,
    readonly events: EventChannel,
  ) {
    this.sampler = new SequenceSampler(request.sampling, request.promptTokens, request.constraint ?? null);
    this.detokenizer = new StreamingDetokenizer(tokenizer, { skipSpecialTokens: request.skipSpecialTokens ?? true });
    this.stopMatcher = new StopMatcher(request.stop ?? []);
    this.stopTokens = new Set([...(request.ignoreEos ? [] : tokenizer.eosTokenIds), ...(request.stopTokenIds ?? [])]);
  }

  get promptLength(): number {
    return this.request.promptTokens.length;
  }

  /**
   * Take a newly sampled token: emit its text, or finish. Returns the finish reason when the
   * sequence is done. The token's own K/V is written by the next step's forward.
   */
  acceptToken(token: number): FinishReason | null {
    const now = performance.now();
    this.firstTokenAt ??= now;
    this.lastTokenAt = now;
    this.generated.push(token);
    this.sampler.accept(token);
    this.pendingIds.push(token);
    if (this.stopTokens.has(token)) return this.finish("stop", null);
    const { emit, matched } = this.stopMatcher.push(this.detokenizer.push(token));
    if (matched !== null) return this.finish("stop_sequence", matched, emit);
    if (emit.length > 0) this.emitDelta(emit);
    if (this.generated.length >= this.request.maxTokens) return this.finish("length", null);
    if (this.promptLength + this.generated.length >= this.contextLimit) return this.finish("context_length", null);
    return null;
  }

  /** End the sequence: release held text (unless a stop string ended it) and send `done`. */
  finish(reason: FinishReason, stopSequence: string | null, lastText = ""): FinishReason {
    if (this.phase === "finished" || this.phase === "settle") return reason;
    this.phase = "finished";
    let rest = lastText;
    if (reason !== "stop_sequence") {
      // The detokenizer's held-back tail can still complete a stop string.
      const tail = this.stopMatcher.push(this.detokenizer.flush());
      rest += tail.emit;
      if (tail.matched !== null) [reason, stopSequence] = ["stop_sequence", tail.matched];
      else rest += this.stopMatcher.flush();
    }
    if (rest.length > 0 || this.pendingIds.length > 0) this.emitDelta(rest);
    this.finishReason = reason;
    const now = performance.now();
    this.events.push({
      type: "done",
      finishReason: reason,
      stopSequence,
      usage: {
        promptTokens: this.promptLength,
        cachedTokens: this.cachedTokens,
        generatedTokens: this.generated.length,
      },
      timings: {
        queuedMs: (this.firstScheduledAt ?? now) - this.submittedAt,
        timeToFirstTokenMs: (this.firstTokenAt ?? now) - this.submittedAt,
        decodeMs: this.firstTokenAt !== null && this.lastTokenAt !== null ? this.lastTokenAt - this.firstTokenAt : 0,
        totalMs: now - this.submittedAt,
      },
    });
    return reason;
  }

  private emitDelta(text: string): void {
    this.events.push({ type: "delta", text, tokenIds: this.pendingIds });
    this.pendingIds = [];
  }
}
