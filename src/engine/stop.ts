/**
 * Stop strings matched on streamed text, across token boundaries. Text is held back only while it
 * could still be the start of a stop string; a stop string itself is never emitted.
 *
 * Which match wins: the first stop string to complete in the text, i.e. the match that ends earliest;
 * if several end at the same character, the one that starts earliest (the longest). That is what a
 * stream checked after every character would see, so the result does not depend on how the text is
 * cut into deltas, and generation stops as soon as any stop string is complete — as vLLM does (it
 * stops at the first stop string it finds after each token; on a tie it takes list order, we take the
 * longest, so the order of the list never matters). "Earliest start" instead would have to keep
 * generating past a complete stop string ("bc" in "abc…") in case a longer one ("abcd") completes.
 *
 * Empty stop strings are ignored: an empty string would stop before the first character, which no
 * client means; the protocol layer may reject them at the edge if its API does. Duplicates are fine.
 */
export class StopMatcher {
  private readonly stops: readonly string[];
  private readonly longest: number;
  /** Text received and not yet emitted: a possible start of a stop string. */
  private held = "";
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = [...new Set(stops.filter((stop) => stop.length > 0))];
    this.longest = Math.max(0, ...this.stops.map((stop) => stop.length));
  }

  /**
   * Feed a text delta; returns what may be emitted now and the stop string if one completed. After a
   * match the matcher is finished: later input is dropped and emits nothing.
   */
  push(text: string): { emit: string; matched: string | null } {
    if (this.done) return { emit: "", matched: null };
    const pending = this.held + text;
    if (this.stops.length === 0) return { emit: pending, matched: null };

    const match = this.firstMatch(pending, this.held.length);
    if (match) {
      this.done = true;
      this.held = "";
      return { emit: pending.slice(0, match.start), matched: match.stop };
    }
    const cut = pending.length - this.heldSuffixLength(pending);
    this.held = pending.slice(cut);
    return { emit: pending.slice(0, cut), matched: null };
  }

  /** End of generation: release held text (nothing once a stop string matched). */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }

  /**
   * The match ending earliest, then starting earliest. `held` had no complete match, so a new one
   * ends past `heldLength`: searching from there keeps a long stream at O(delta) per push.
   */
  private firstMatch(text: string, heldLength: number): { stop: string; start: number } | null {
    let best: { stop: string; start: number; end: number } | null = null;
    for (const stop of this.stops) {
      // The earliest occurrence of one stop string is also its earliest-ending one.
      const start = text.indexOf(stop, Math.max(0, heldLength - stop.length + 1));
      if (start < 0) continue;
      const end = start + stop.length;
      if (!best || end < best.end || (end === best.end && start < best.start)) best = { stop, start, end };
    }
    return best;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of a stop string. */
  private heldSuffixLength(text: string): number {
    for (let length = Math.min(this.longest - 1, text.length); length > 0; length--) {
      const suffix = text.slice(text.length - length);
      if (this.stops.some((stop) => stop.startsWith(suffix))) return keepPairsWhole(text, length);
    }
    return keepPairsWhole(text, 0);
  }
}

/**
 * A held suffix must not start on the low half of a surrogate pair (possible only with a stop string
 * that starts with a lone low surrogate) and the emitted part must not end on a high half (a delta
 * that ended mid-pair): hold one more unit so a pair always leaves in one piece.
 */
function keepPairsWhole(text: string, heldLength: number): number {
  const cut = text.length - heldLength;
  if (cut <= 0) return heldLength;
  const before = text.charCodeAt(cut - 1);
  return before >= 0xd800 && before <= 0xdbff ? heldLength + 1 : heldLength;
}
