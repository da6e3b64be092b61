/**
 * The batch attention reads, uploaded once per forward (prepareAttention): each sequence's query rows,
 * context length and block table, plus work-item lists for every row grouping a plan may pick, so
 * every layer's dispatches only pick lists.
 *
 * Sequences with at least `prefillMinRows` query rows go to the prefill kernel in items of R rows
 * (PREFILL_ROWS_CHOICES), except a short tail past their whole items (decodeTailRows), which goes to
 * the decode kernel with the shorter sequences, in items of D rows (DECODE_ROWS_CHOICES). Which kernel
 * takes a row depends on its own sequence only.
 */
import type { AttentionSequence, KvCache, PreparedAttentionBatch } from "../../contract.js";
import type { GpuRuntime, GpuTensor } from "../runtime.js";
import { checkQueryRows } from "../../kv-checks.js";
import { PREFILL_MIN_ROWS, PREFILL_ROWS_CHOICES } from "./attention-prefill.js";
import { DECODE_ROWS_CHOICES, decodeTailRows } from "./attention-decode.js";

export interface WorkItems {
  /** Word offset of the list in the batch buffer. */
  at: number;
  count: number;
  /** Per item: sequence index, first row within the sequence, row count (as uploaded). */
  words: Uint32Array;
}

/** The decode kernel's rows beside a prefill dispatch of R-row items: lists by D, and the longest run. */
export interface BesidePrefill {
  items: Map<number, WorkItems>;
  /** By D: how many of the list's items are long sequences' tails (the rest are short sequences). */
  tailItems: Map<number, number>;
  maxRows: number;
}

export class GpuAttentionBatch implements PreparedAttentionBatch {
  readonly totalQueries: number;
  readonly maxQueryLength: number;
  /** Decode-kernel lists over every row of every sequence (where the prefill kernel does not apply). */
  readonly items = new Map<number, WorkItems>();
  /** Prefill-kernel lists by R: the whole items, and the tails decodeTailRows leaves there. */
  readonly prefillItems = new Map<number, WorkItems>();
  /** By R: the decode kernel's share when the prefill kernel takes R-row items. */
  readonly besidePrefill = new Map<number, BesidePrefill>();
  /** Caches whose blockCount/blockSize this batch's tables were checked against. */
  readonly checkedCaches = new WeakSet<KvCache>();
  readonly buffer: GpuTensor;
  private disposed = false;

  constructor(
    private readonly runtime: GpuRuntime,
    readonly sequences: readonly AttentionSequence[],
    /** Benchmarks set it to compare the kernels on the same rows (1: all prefill; Infinity: none). */
    readonly prefillMinRows = PREFILL_MIN_ROWS,
    /** Benchmarks clear it to keep a long sequence's short tail on the prefill kernel, for comparison. */
    readonly decodeTails = true,
  ) {
    this.totalQueries = checkQueryRows(sequences);
    this.maxQueryLength = Math.max(0, ...sequences.map((sequence) => sequence.queryLength));
    const words: number[] = [];
    const tablesAt = 4 * sequences.length;
    let tableAt = tablesAt;
    for (const sequence of sequences) {
      words.push(sequence.queryStart, sequence.queryLength, sequence.contextLength, tableAt);
      tableAt += sequence.blockTable.length;
    }
    for (const sequence of sequences) for (const block of sequence.blockTable) words.push(block);
    /** Uploads a list of items of `rows` rows over each sequence's rows [from(s), to(s)). */
    const addList = (rows: number, span: (sequence: AttentionSequence) => [number, number]): WorkItems => {
      const list: number[] = [];
      sequences.forEach((sequence, index) => {
        const [from, to] = span(sequence);
        for (let first = from; first < to; first += rows) list.push(index, first, Math.min(rows, to - first));
      });
      const items = { at: words.length, count: list.length / 3, words: Uint32Array.from(list) };
      for (const word of list) words.push(word);
      return items;
    };
    const long = (sequence: AttentionSequence) => sequence.queryLength >= prefillMinRows;
    for (const rows of DECODE_ROWS_CHOICES)
      this.items.set(
        rows,
        addList(rows, (s) => [0, s.queryLength]),
      );
    for (const prefillRows of PREFILL_ROWS_CHOICES) {
      const tail = (s: AttentionSequence) =>
        !long(s) ? s.queryLength : decodeTails ? decodeTailRows(s.queryLength, prefillRows) : 0;
      this.prefillItems.set(
        prefillRows,
        addList(prefillRows, (s) => (long(s) ? [0, s.queryLength - tail(s)] : [0, 0])),
      );
      const beside: BesidePrefill = {
        items: new Map(),
        tailItems: new Map(),
        maxRows: Math.max(0, ...sequences.map(tail)),
      };
      for (const rows of DECODE_ROWS_CHOICES) {
        beside.items.set(
          rows,
          addList(rows, (s) => [s.queryLength - tail(s), s.queryLength]),
        );
        const tails = sequences.filter(long).map((s) => Math.ceil(tail(s) / rows));
        beside.tailItems.set(
          rows,
          tails.reduce((sum, count) => sum + count, 0),
        );
      }
      this.besidePrefill.set(prefillRows, beside);
    }
    // Submitting first keeps the upload (a queue write, which runs ahead of unsubmitted work) from
    // overtaking work recorded against the recycled buffer. Recycling keeps bind groups cached.
    runtime.submit();
    this.buffer = runtime.allocate([words.length], "u32");
    runtime.upload(this.buffer, Uint32Array.from(words));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.runtime.release(this.buffer);
  }

  get live(): boolean {
    return !this.disposed;
  }
}

export function prepareAttention(
  runtime: GpuRuntime,
  sequences: readonly AttentionSequence[],
  prefillMinRows = PREFILL_MIN_ROWS,
  decodeTails = true,
): GpuAttentionBatch {
  return new GpuAttentionBatch(runtime, sequences, prefillMinRows, decodeTails);
}
