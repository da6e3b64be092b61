/**
 * A byte-level NFA (Thompson fragments: byte-range edges and ε edges), built by the schema compiler and
 * then trimmed to the states that lie on some path from the start to the final state. Trimming is what
 * makes masks honest: every state left can still reach the end, so any non-empty set of states is a
 * prefix that can be completed, and a mask never leads the model into a dead end.
 */
import { GrammarError } from "./errors.js";

/** A piece of automaton with one entry and one exit; `end` has no outgoing edges until it is joined. */
export interface Fragment {
  start: number;
  end: number;
}

/** Thrown when a grammar would need more states than the builder's budget. */
export class GrammarSizeError extends GrammarError {
  override name = "GrammarSizeError";
}

export class NfaBuilder {
  /** Per state: byte edges as flat (lo, hi, to) triples. */
  private readonly edges: number[][] = [];
  private readonly epsilons: number[][] = [];

  constructor(private readonly budget: number) {}

  get size(): number {
    return this.edges.length;
  }

  state(): number {
    if (this.edges.length >= this.budget) {
      throw new GrammarSizeError(`the grammar needs more than ${this.budget} automaton states`);
    }
    this.edges.push([]);
    this.epsilons.push([]);
    return this.edges.length - 1;
  }

  edge(from: number, lo: number, hi: number, to: number): void {
    this.edges[from]!.push(lo, hi, to);
  }

  epsilon(from: number, to: number): void {
    this.epsilons[from]!.push(to);
  }

  /** Matches nothing but the empty string. */
  empty(): Fragment {
    const start = this.state();
    const end = this.state();
    this.epsilon(start, end);
    return { start, end };
  }

  /** Matches nothing at all (trimmed away unless another path reaches its end). */
  never(): Fragment {
    return { start: this.state(), end: this.state() };
  }

  literal(bytes: ArrayLike<number>): Fragment {
    const start = this.state();
    let at = start;
    for (let index = 0; index < bytes.length; index++) {
      const next = this.state();
      this.edge(at, bytes[index]!, bytes[index]!, next);
      at = next;
    }
    return { start, end: at };
  }

  sequence(parts: readonly Fragment[]): Fragment {
    if (parts.length === 0) return this.empty();
    for (let index = 1; index < parts.length; index++) this.epsilon(parts[index - 1]!.end, parts[index]!.start);
    return { start: parts[0]!.start, end: parts[parts.length - 1]!.end };
  }

  union(options: readonly Fragment[]): Fragment {
    if (options.length === 1) return options[0]!;
    const start = this.state();
    const end = this.state();
    for (const option of options) {
      this.epsilon(start, option.start);
      this.epsilon(option.end, end);
    }
    return { start, end };
  }

  optional(part: Fragment): Fragment {
    this.epsilon(part.start, part.end);
    return part;
  }

  /** Keeps the states on a path from `root.start` to `root.end`, renumbered compactly. */
  finish(root: Fragment): Nfa {
    const count = this.edges.length;
    const forward = this.reach(root.start, (state, visit) => {
      const edges = this.edges[state]!;
      for (let index = 2; index < edges.length; index += 3) visit(edges[index]!);
      for (const to of this.epsilons[state]!) visit(to);
    });
    const reverse: number[][] = Array.from({ length: count }, () => []);
    for (let state = 0; state < count; state++) {
      if (!forward[state]) continue;
      const edges = this.edges[state]!;
      for (let index = 2; index < edges.length; index += 3) reverse[edges[index]!]!.push(state);
      for (const to of this.epsilons[state]!) reverse[to]!.push(state);
    }
    const backward = this.reach(root.end, (state, visit) => reverse[state]!.forEach(visit));
    if (!forward[root.end] || !backward[root.start]) throw new GrammarError("the grammar allows no output at all");

    const renumber = new Int32Array(count).fill(-1);
    let kept = 0;
    for (let state = 0; state < count; state++) if (forward[state] && backward[state]) renumber[state] = kept++;
    const edgeStart = new Int32Array(kept + 1);
    const epsilonStart = new Int32Array(kept + 1);
    const lo: number[] = [];
    const hi: number[] = [];
    const to: number[] = [];
    const epsilonTo: number[] = [];
    for (let state = 0; state < count; state++) {
      const id = renumber[state]!;
      if (id < 0) continue;
      edgeStart[id] = lo.length;
      epsilonStart[id] = epsilonTo.length;
      const edges = this.edges[state]!;
      for (let index = 0; index < edges.length; index += 3) {
        const target = renumber[edges[index + 2]!]!;
        if (target < 0) continue;
        lo.push(edges[index]!);
        hi.push(edges[index + 1]!);
        to.push(target);
      }
      for (const target of this.epsilons[state]!) if (renumber[target]! >= 0) epsilonTo.push(renumber[target]!);
    }
    edgeStart[kept] = lo.length;
    epsilonStart[kept] = epsilonTo.length;
    return new Nfa(
      renumber[root.start]!,
      renumber[root.end]!,
      edgeStart,
      Uint8Array.from(lo),
      Uint8Array.from(hi),
      Int32Array.from(to),
      epsilonStart,
      Int32Array.from(epsilonTo),
    );
  }

  private reach(from: number, next: (state: number, visit: (to: number) => void) => void): Uint8Array {
    const seen = new Uint8Array(this.edges.length);
    const stack = [from];
    seen[from] = 1;
    const visit = (to: number) => {
      if (!seen[to]) {
        seen[to] = 1;
        stack.push(to);
      }
    };
    while (stack.length > 0) next(stack.pop()!, visit);
    return seen;
  }
}

const NO_STATES = new Int32Array(0);

/**
 * The trimmed automaton. A set of states is kept as a sorted Int32Array of the states that matter
 * after ε-closure: those with byte edges, and the final state. Two sets with the same members have
 * the same future, which is what lets the lazy DFA intern them.
 */
export class Nfa {
  private readonly marks: Int32Array;
  private mark = 0;

  constructor(
    readonly start: number,
    readonly final: number,
    private readonly edgeStart: Int32Array,
    private readonly lo: Uint8Array,
    private readonly hi: Uint8Array,
    private readonly to: Int32Array,
    private readonly epsilonStart: Int32Array,
    private readonly epsilonTo: Int32Array,
  ) {
    this.marks = new Int32Array(edgeStart.length - 1);
  }

  get stateCount(): number {
    return this.edgeStart.length - 1;
  }

  initial(): Int32Array {
    return this.closure([this.start]);
  }

  isFinal(set: Int32Array): boolean {
    // The final state has no byte edges; it sorts anywhere, so look for it.
    return set.includes(this.final);
  }

  /** The states reached from `set` by one byte (empty when the byte is not allowed). */
  step(set: Int32Array, byte: number): Int32Array {
    const seeds: number[] = [];
    for (let index = 0; index < set.length; index++) {
      const state = set[index]!;
      for (let edge = this.edgeStart[state]!; edge < this.edgeStart[state + 1]!; edge++) {
        if (byte >= this.lo[edge]! && byte <= this.hi[edge]!) seeds.push(this.to[edge]!);
      }
    }
    return seeds.length === 0 ? NO_STATES : this.closure(seeds);
  }

  /** `set` advanced through `bytes`, or an empty set once a byte is refused. */
  run(set: Int32Array, bytes: Uint8Array): Int32Array {
    let current = set;
    for (let index = 0; index < bytes.length && current.length > 0; index++)
      current = this.step(current, bytes[index]!);
    return current;
  }

  private closure(seeds: readonly number[]): Int32Array {
    const mark = ++this.mark;
    const stack = [...seeds];
    const kept: number[] = [];
    for (const seed of seeds) this.marks[seed] = mark;
    while (stack.length > 0) {
      const state = stack.pop()!;
      if (state === this.final || this.edgeStart[state + 1]! > this.edgeStart[state]!) kept.push(state);
      for (let edge = this.epsilonStart[state]!; edge < this.epsilonStart[state + 1]!; edge++) {
        const to = this.epsilonTo[edge]!;
        if (this.marks[to] !== mark) {
          this.marks[to] = mark;
          stack.push(to);
        }
      }
    }
    return Int32Array.from(kept).sort();
  }
}
