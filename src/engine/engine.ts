/**
 * The generation engine: continuous batching over the paged KV cache, with prefill split into chunks
 * that ride along with decode steps.
 *
 * Every step is one batched forward made of
 *   - one token for every decoding sequence (so streams keep flowing while someone else prefills), and
 *   - prompt chunks of prefilling sequences, oldest first, up to `prefillStepSize` tokens in total.
 * A new request joins at the next step; a cancelled one leaves at the next step boundary and its KV
 * blocks are free at once. A step that fails (device lost, out of memory) fails the requests in it
 * and the engine carries on with the rest.
 */
import type { Backend, KvCache, KvStorage } from "../../backends/contract.js";
import { OutOfKvBlocksError, PagedKv } from "../../backends/kv-paging.js";
import type { ForwardBatch, LanguageModel } from "../model/architecture.js";
import type { ModelTokenizer } from "../model/tokenizer.js";
import { GenerationError, PromptRejectedError, type GenerationEvent, type GenerationRequest } from "./events.js";
import type { KvMemory } from "./kv-memory.js";
import { sampleRows } from "./sampling.js";
import { EventChannel, Sequence } from "./sequence.js";

export interface EngineOptions {
  /** Most sequences in one batched forward (SEMANTIC_MLX_MAX_BATCH_SIZE). */
  maxBatchSize: number;
  /** Prompt tokens per step, over all prefilling sequences (SEMANTIC_MLX_PREFILL_STEP_SIZE). */
  prefillStepSize: number;
  /** Longest prompt + output; 0 = the model's own limit (SEMANTIC_MLX_MAX_CONTEXT_LENGTH). */
  maxContextLength: number;
  /** Bytes of KV blocks on the device (SEMANTIC_MLX_CACHE_BUDGET_MB). */
  kvBudgetBytes: number;
  kvStorage: KvStorage;
  /** Tokens per KV block. */
  blockSize?: number;
}

export interface EngineStats {
  waiting: number;
  running: number;
  freeKvBlocks: number;
  totalKvBlocks: number;
}

interface StepEntry {
  sequence: Sequence;
  tokens: number[];
  /** Whether this entry's last row is sampled (decode, or the prompt's final chunk). */
  sample: boolean;
}

export class Engine {
  readonly contextLimit: number;
  /** Bytes of the KV store on the device (all blocks). */
  readonly kvBytes: number;
  private readonly cache: KvCache;
  private readonly paging: PagedKv;
  /** Requests whose cached prefix is being looked up (maybe read from disk). */
  private readonly preparing = new Set<Sequence>();
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private nextId = 1;
  /** Blocks the oldest waiting request lacked at the last admission: memory is asked to free them. */
  private shortOfBlocks = 0;
  private loop: Promise<void> | null = null;
  private disposed = false;
  /** Finished requests still writing their last token's K/V (beginSettle), and what ends the wait. */
  private readonly settling = new Map<Sequence, { done: Promise<void>; resolve: () => void }>();

  constructor(
    private readonly backend: Backend,
    private readonly model: LanguageModel,
    private readonly tokenizer: ModelTokenizer,
    private readonly options: EngineOptions,
    private readonly memory: KvMemory | null = null,
  ) {
    const { layers, kvHeads, headDim } = model.kvGeometry;
    const blockSize = options.blockSize ?? 16;
    const spec = { layers, kvHeads, headDim, blockSize, storage: options.kvStorage };
    // One block first, to learn its real size in this backend's storage format.
    const probe = backend.createKvCache({ ...spec, blockCount: 1 });
    const bytesPerBlock = probe.bytesPerBlock;
    probe.dispose();
    const blockCount = Math.floor(options.kvBudgetBytes / bytesPerBlock);
    if (blockCount < 2) {
      throw new Error(
        `SEMANTIC_MLX_CACHE_BUDGET_MB: ${(options.kvBudgetBytes / 2 ** 20).toFixed(1)} MiB holds ${blockCount} KV block(s) of ${bytesPerBlock} bytes; raise it`,
      );
    }
    this.cache = backend.createKvCache({ ...spec, blockCount });
    this.kvBytes = blockCount * this.cache.bytesPerBlock;
    this.paging = new PagedKv(this.cache);
    memory?.attach(this.paging, this.cache);
    const modelLimit = model.config.maxPositions ?? Number.POSITIVE_INFINITY;
    const configured = options.maxContextLength > 0 ? options.maxContextLength : modelLimit;
    this.contextLimit = Math.min(configured, modelLimit, blockCount * blockSize);
  }

  stats(): EngineStats {
    return {
      waiting: this.waiting.length + this.preparing.size,
      running: this.running.length,
      freeKvBlocks: this.paging.freeBlockCount,
      totalKvBlocks: this.paging.blockCount,
    };
  }

  /**
   * Queue a request and stream its events. Refuses, before any work, a prompt that is empty or does
   * not leave room for one generated token in the context window.
   */
  generate(request: GenerationRequest): AsyncIterable<GenerationEvent> {
    if (this.disposed) throw new GenerationError("the engine has been shut down");
    const length = request.promptTokens.length;
    if (length === 0) throw new PromptRejectedError("the prompt is empty");
    if (length >= this.contextLimit) {
      throw new PromptRejectedError(
        `the prompt is ${length} tokens; the context window is ${this.contextLimit} tokens (prompt and output together)`,
      );
    }
    if (!Number.isInteger(request.maxTokens) || request.maxTokens < 1) {
      throw new PromptRejectedError(`max_tokens must be a positive integer, got ${request.maxTokens}`);
    }
    const cancel = () => this.cancel(sequence);
    const channel = new EventChannel(cancel);
    const sequence = new Sequence(this.nextId++, request, this.tokenizer, this.contextLimit, channel);
    if (request.signal?.aborted) sequence.cancelled = true;
    request.signal?.addEventListener("abort", cancel, { once: true });
    if (this.memory && request.memory) {
      // The prefix lookup may read from disk: it runs beside the loop, never inside a step.
      this.preparing.add(sequence);
      void this.prepare(sequence);
    } else {
      channel.push({ type: "prompt", promptTokens: length, cachedTokens: 0 });
      this.waiting.push(sequence);
      this.kick();
    }
    return channel;
  }

  private async prepare(sequence: Sequence): Promise<void> {
    try {
      const reuse = await this.memory!.acquire(sequence.request.memory!, sequence.request.promptTokens);
      sequence.kvSequence = reuse.kvSequence;
      sequence.prefilled = reuse.reusedTokens;
      sequence.cachedTokens = reuse.reusedTokens;
    } catch (error) {
      sequence.events.fail(new GenerationError(`KV memory lookup failed: ${(error as Error).message}`));
      sequence.phase = "finished";
    } finally {
      this.preparing.delete(sequence);
    }
    if (sequence.phase === "finished") return;
    sequence.events.push({
      type: "prompt",
      promptTokens: sequence.request.promptTokens.length,
      cachedTokens: sequence.cachedTokens,
    });
    this.waiting.push(sequence);
    this.kick();
  }

  /**
   * Resolves when every finished request has written its last token's K/V and handed its cache to the
   * memory: what a client that waits a step before its next turn sees (benchmarks, tests).
   */
  async settled(): Promise<void> {
    await Promise.all([...this.settling.values()].map((settle) => settle.done));
  }

  /** Stop taking requests, cancel what is queued or running, and free the KV store. */
  async dispose(): Promise<void> {
    this.disposed = true;
    for (const sequence of [...this.preparing, ...this.waiting, ...this.running]) this.cancel(sequence);
    await this.loop;
    this.cache.dispose();
  }

  private cancel(sequence: Sequence): void {
    sequence.cancelled = true;
    // Between steps nothing is in flight: free at once. Otherwise the running step ends first.
    if (this.loop === null) this.retire();
  }

  private kick(): void {
    this.loop ??= this.runLoop().finally(() => {
      this.loop = null;
      if (this.waiting.length + this.running.length > 0 && !this.disposed) this.kick();
    });
  }

  private async runLoop(): Promise<void> {
    while (this.waiting.length + this.running.length > 0) {
      this.retire();
      this.shortOfBlocks = 0;
      this.admit();
      if (this.shortOfBlocks > 0 && this.memory) {
        // Idle agents' caches give way to requests that need the room (evicted to disk when enabled).
        if ((await this.memory.reclaim(this.shortOfBlocks)) > 0) this.admit();
      }
      const entries = this.plan();
      if (entries.length === 0) {
        if (this.running.length === 0 && this.waiting.length > 0) this.rejectUnfittable();
        break;
      }
      await this.step(entries);
      this.retire();
      // Let the event loop breathe between steps (HTTP reads and writes, new requests).
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Remove finished and cancelled sequences, freeing their KV blocks. */
  private retire(): void {
    for (const list of [this.waiting, this.running]) {
      for (let i = list.length - 1; i >= 0; i--) {
        const sequence = list[i]!;
        if (sequence.cancelled && sequence.phase === "settle") sequence.phase = "finished";
        if (sequence.cancelled && sequence.phase !== "finished") sequence.finish("cancelled", null);
        if (sequence.phase !== "finished") continue;
        if (sequence.kvSequence !== null) this.handBack(sequence);
        sequence.kvSequence = null;
        // A settled agent's cache is with the memory: its follow-up may look it up now.
        this.settling.get(sequence)?.resolve();
        this.settling.delete(sequence);
        list.splice(i, 1);
      }
    }
  }

  /**
   * A request of a named agent has just finished, and the last token it generated was sampled but
   * never fed back: its K/V is missing. The agent's next turn resends that token, so a follow-up of 64
   * new tokens became 65 rows, and the odd row cost every projection once more as a matrix-vector
   * product, and its attention a second kernel, on the way to the next first token. Instead the
   * sequence stays in the batch for one more row (batched with whatever else runs) while the client
   * reads the answer, and goes to the memory after it. This runs in the step that sent its `done`,
   * before the client can send a follow-up; the memory makes that follow-up wait for the row.
   */
  private beginSettle(sequence: Sequence): void {
    const scope = sequence.request.memory;
    if (!this.memory || !scope || scope.agentId === null || sequence.cancelled) return;
    const kv = sequence.kvSequence!;
    if (this.paging.length(kv) !== sequence.promptLength + sequence.generated.length - 1) return;
    sequence.phase = "settle";
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    this.settling.set(sequence, { done, resolve });
    this.memory.settling(scope, done);
  }

  /** The sequence's KV goes to memory (to keep for the agent) or back to the free blocks. */
  private handBack(sequence: Sequence): void {
    const kv = sequence.kvSequence!;
    const scope = sequence.request.memory;
    if (!this.memory || !scope) {
      this.paging.free(kv);
      return;
    }
    // K/V are written for the prompt and every generated token (the last one only once settled).
    const tokens = [...sequence.request.promptTokens, ...sequence.generated].slice(0, this.paging.length(kv));
    this.memory.release(scope, kv, tokens, sequence.failed ? "error" : (sequence.finishReason ?? "cancelled"));
  }

  /** Move waiting requests into the batch while there is room and their prompts fit in free blocks. */
  private admit(): void {
    const blockSize = this.paging.blockSize;
    const blocksFor = (tokens: number) => Math.ceil(tokens / blockSize);
    // Blocks the running sequences may still claim for their prompts plus one decode token.
    // (A decoding sequence past its first token claims nothing more; a settling one its last row.)
    let claimed = 0;
    for (const sequence of this.running) {
      const kvLength = sequence.kvSequence === null ? 0 : this.paging.length(sequence.kvSequence);
      const wanted = sequence.phase === "settle" ? kvLength + 1 : sequence.promptLength + 1;
      claimed += Math.max(0, blocksFor(wanted) - blocksFor(kvLength));
    }
    while (this.waiting.length > 0 && this.running.length < this.options.maxBatchSize) {
      const next = this.waiting[0]!;
      const held = next.kvSequence === null ? 0 : blocksFor(this.paging.length(next.kvSequence));
      const needed = blocksFor(next.promptLength + 1) - held;
      if (claimed + needed > this.paging.freeBlockCount) {
        this.shortOfBlocks = claimed + needed - this.paging.freeBlockCount;
        break;
      }
      this.waiting.shift();
      next.kvSequence ??= this.paging.create();
      next.phase = "prefill";
      claimed += needed;
      this.running.push(next);
    }
  }

  private plan(): StepEntry[] {
    const entries: StepEntry[] = [];
    for (const sequence of this.running) {
      if (sequence.phase === "decode") {
        entries.push({ sequence, tokens: [sequence.generated.at(-1)!], sample: true });
      } else if (sequence.phase === "settle") {
        entries.push({ sequence, tokens: [sequence.generated.at(-1)!], sample: false });
      }
    }
    let budget = this.options.prefillStepSize;
    for (const sequence of this.running) {
      if (sequence.phase !== "prefill" || budget === 0) continue;
      const count = Math.min(budget, sequence.promptLength - sequence.prefilled);
      const tokens = sequence.request.promptTokens.slice(sequence.prefilled, sequence.prefilled + count);
      entries.push({ sequence, tokens, sample: sequence.prefilled + count === sequence.promptLength });
      budget -= count;
    }
    return entries;
  }

  private async step(planned: StepEntry[]): Promise<void> {
    const entries: StepEntry[] = [];
    const batch = { tokens: [] as number[], positions: [] as number[], slots: [] as number[] };
    const sequences: ForwardBatch["sequences"][number][] = [];
    const logitRows: number[] = [];
    for (const entry of planned) {
      const kv = entry.sequence.kvSequence!;
      const start = this.paging.length(kv);
      let slots: Uint32Array;
      try {
        slots = this.paging.append(kv, entry.tokens.length);
      } catch (error) {
        if (!(error instanceof OutOfKvBlocksError)) throw error;
        if (entry.sequence.phase === "settle") {
          // No block for the settle row: the cache goes back without its last token.
          entry.sequence.phase = "finished";
          continue;
        }
        // Admission reserves prompts; only decode growth can run out. That sequence ends here.
        entry.sequence.events.fail(
          new GenerationError(
            `the KV cache is full (${this.paging.blockCount} blocks): raise SEMANTIC_MLX_CACHE_BUDGET_MB or lower SEMANTIC_MLX_MAX_BATCH_SIZE`,
          ),
        );
        entry.sequence.phase = "finished";
        entry.sequence.failed = true;
        continue;
      }
      entry.sequence.firstScheduledAt ??= performance.now();
      sequences.push({
        queryStart: batch.tokens.length,
        queryLength: entry.tokens.length,
        contextLength: start + entry.tokens.length,
        blockTable: this.paging.blockTable(kv),
      });
      entry.tokens.forEach((token, offset) => {
        batch.tokens.push(token);
        batch.positions.push(start + offset);
        batch.slots.push(slots[offset]!);
      });
      if (entry.sample) logitRows.push(batch.tokens.length - 1);
      entries.push(entry);
    }
    if (entries.length === 0) return;
    // A step of non-final prompt chunks samples nothing; one row of logits keeps the forward uniform.
    const sampling = logitRows.length > 0;
    if (!sampling) logitRows.push(batch.tokens.length - 1);

    let tokens: number[] = [];
    try {
      const logits = this.model.forward(
        {
          tokens: Uint32Array.from(batch.tokens),
          positions: Int32Array.from(batch.positions),
          slots: Uint32Array.from(batch.slots),
          sequences,
          logitRows: Uint32Array.from(logitRows),
        },
        this.cache,
      );
      try {
        const samplers = entries.filter((entry) => entry.sample).map((entry) => entry.sequence.sampler);
        if (sampling) tokens = await sampleRows(this.backend, logits, samplers);
        else await this.backend.flush();
      } finally {
        this.backend.free(logits);
      }
    } catch (error) {
      const reason = this.backend.failure ?? (error instanceof Error ? error.message : String(error));
      for (const { sequence } of entries) {
        if (sequence.phase === "settle") {
          // Its answer is out and its cache was whole before this step: only the row is lost.
          this.paging.trim(sequence.kvSequence!, sequence.promptLength + sequence.generated.length - 1);
          sequence.phase = "finished";
          continue;
        }
        sequence.events.fail(new GenerationError(`generation failed: ${reason}`));
        sequence.phase = "finished";
        sequence.failed = true;
      }
      return;
    }

    let sampled = 0;
    for (const entry of entries) {
      const { sequence } = entry;
      if (sequence.phase === "settle") {
        sequence.phase = "finished";
        continue;
      }
      if (sequence.phase === "prefill") sequence.prefilled += entry.tokens.length;
      if (!entry.sample) continue;
      const token = tokens[sampled++]!;
      if (sequence.cancelled) continue;
      sequence.phase = "decode";
      if (sequence.acceptToken(token) !== null) this.beginSettle(sequence);
    }
  }

  /** Nothing runs and the oldest waiting prompt still does not fit: it never will. */
  private rejectUnfittable(): void {
    const sequence = this.waiting.shift()!;
    sequence.events.fail(
      new GenerationError(
        `the prompt needs ${Math.ceil((sequence.promptLength + 1) / this.paging.blockSize)} KV blocks, the cache has ${this.paging.blockCount}: raise SEMANTIC_MLX_CACHE_BUDGET_MB`,
      ),
    );
  }
}
