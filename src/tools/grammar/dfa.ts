/**
 * The NFA determinized lazily: a DFA state is an interned set of NFA states, and its 256 transitions
 * are filled in the first time each byte is asked for. Once warm, walking a token's bytes is one
 * array read per byte, which is what makes a mask over a 262K vocabulary affordable. States repeat
 * (inside a free string, between properties), so the table stays small; when it grows past
 * `maxStates` it is dropped at the next safe point and rebuilt on demand (`generation` says so).
 */
import type { Nfa } from "./nfa.js";

export const UNKNOWN = -2;
export const DEAD = -1;

export class LazyDfa {
  /** transitions[state * 256 + byte]: the next state, DEAD, or UNKNOWN (not computed yet). */
  transitions = new Int32Array(256 * 64).fill(UNKNOWN);
  /** Bumped when the table is dropped: state ids from an older generation mean nothing. */
  generation = 0;
  private sets: Int32Array[] = [];
  private accepting: boolean[] = [];
  private ids = new Map<string, number>();

  constructor(
    readonly nfa: Nfa,
    private readonly maxStates = 1 << 14,
  ) {}

  get stateCount(): number {
    return this.sets.length;
  }

  intern(set: Int32Array): number {
    if (set.length === 0) return DEAD;
    const key = set.join(",");
    let id = this.ids.get(key);
    if (id !== undefined) return id;
    id = this.sets.length;
    this.sets.push(set);
    this.accepting.push(this.nfa.isFinal(set));
    this.ids.set(key, id);
    if ((id + 1) * 256 > this.transitions.length) {
      const grown = new Int32Array(this.transitions.length * 2).fill(UNKNOWN);
      grown.set(this.transitions);
      this.transitions = grown;
    }
    return id;
  }

  setOf(state: number): Int32Array {
    return this.sets[state]!;
  }

  isAccepting(state: number): boolean {
    return this.accepting[state]!;
  }

  step(state: number, byte: number): number {
    const index = state * 256 + byte;
    const known = this.transitions[index]!;
    if (known !== UNKNOWN) return known;
    const next = this.intern(this.nfa.step(this.sets[state]!, byte));
    this.transitions[index] = next; // intern may have replaced the array; write to the current one
    return next;
  }

  /** Drops the table when it is too large; call only where no state id is held across the call. */
  collect(): void {
    if (this.sets.length <= this.maxStates) return;
    this.sets = [];
    this.accepting = [];
    this.ids = new Map();
    this.transitions = new Int32Array(256 * 64).fill(UNKNOWN);
    this.generation++;
  }
}
