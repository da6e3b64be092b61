/**
 * Stop strings on streamed text: whatever way the text is cut into deltas, the emitted text and the
 * matched stop string are the same, a stop string never leaks, and text is held only while it could
 * still start a stop string.
 */
import { describe, expect, it } from "vitest";
import { StopMatcher } from "../../src/engine/stop.js";

interface Outcome {
  emitted: string;
  matched: string | null;
}

/** Feed the deltas in order, stopping at a match, as the engine does; flush at the end otherwise. */
function run(stops: readonly string[], deltas: readonly string[]): Outcome & { pieces: string[] } {
  const matcher = new StopMatcher(stops);
  const pieces: string[] = [];
  for (const delta of deltas) {
    const { emit, matched } = matcher.push(delta);
    pieces.push(emit);
    if (matched !== null) return { emitted: pieces.join(""), matched, pieces };
  }
  pieces.push(matcher.flush());
  return { emitted: pieces.join(""), matched: null, pieces };
}

/**
 * Independent reference on the whole text: scan the end position forward; the first end at which
 * some stop string completes decides, and among those ending there the longest (earliest start) wins.
 */
function reference(stops: readonly string[], text: string): Outcome {
  const byLength = stops.filter((stop) => stop.length > 0).sort((a, b) => b.length - a.length);
  for (let end = 1; end <= text.length; end++) {
    const stop = byLength.find((candidate) => text.slice(0, end).endsWith(candidate));
    if (stop !== undefined) return { emitted: text.slice(0, end - stop.length), matched: stop };
  }
  return { emitted: text, matched: null };
}

/** Deterministic pseudo-random chunking (mulberry32), cutting only between code points. */
function randomChunks(text: string, seed: number, maxChunk = 5): string[] {
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const codePoints = [...text];
  const chunks: string[] = [];
  for (let i = 0; i < codePoints.length;) {
    const length = 1 + Math.floor(random() * maxChunk);
    chunks.push(codePoints.slice(i, i + length).join(""));
    i += length;
  }
  return chunks;
}

const isWellFormed = (text: string) =>
  !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);

const CASES: { stops: string[]; text: string }[] = [
  { stops: ["</answer>"], text: "The answer is <b>42</b>.</answer> and more after" },
  { stops: ["\n\nUser:", "###"], text: "line one\n\nline two\n\nUse this\n\nUser: hi ### tail" },
  { stops: ["abcd", "bc"], text: "xxabcdyy" }, // "bc" completes first
  { stops: ["bc", "abc"], text: "xxabcyy" }, // both end at the same character: the longer wins
  { stops: ["aab"], text: "aaaaab!" }, // a self-overlapping stop string
  { stops: ["STOP"], text: "no stop string here, only STO and ST and S" },
  { stops: ["😀!", "é"], text: "ça va 😀 😀😀! oui" }, // multi-unit characters in text and stops
  { stops: ["🛑"], text: "fine ✅ then 🛑 gone" },
  { stops: ["zz", "zz"], text: "duplicates azz" },
  { stops: ["END"], text: "party 🎉 time 🎉🎉 END" }, // pairs that start no stop string
];

describe("StopMatcher", () => {
  for (const { stops, text } of CASES) {
    it(`${JSON.stringify(stops)} on ${JSON.stringify(text)}: same outcome whole, per character and in random chunks`, () => {
      const expected = reference(stops, text);
      expect(run(stops, [text])).toMatchObject(expected);
      expect(run(stops, [...text])).toMatchObject(expected); // one code point at a time
      const perUnit = run(stops, text.split("")); // one UTF-16 unit at a time: pairs still leave whole
      expect(perUnit).toMatchObject(expected);
      for (const piece of perUnit.pieces) expect(isWellFormed(piece)).toBe(true);
      for (let seed = 1; seed <= 20; seed++) {
        const outcome = run(stops, randomChunks(text, seed));
        expect(outcome).toMatchObject(expected);
        for (const piece of outcome.pieces) expect(isWellFormed(piece)).toBe(true);
      }
    });
  }

  it("a stop string split across many deltas is caught and never emitted", () => {
    const matcher = new StopMatcher(["<|end|>"]);
    expect(matcher.push("Done")).toEqual({ emit: "Done", matched: null });
    expect(matcher.push(" <")).toEqual({ emit: " ", matched: null });
    expect(matcher.push("|e")).toEqual({ emit: "", matched: null });
    expect(matcher.push("nd")).toEqual({ emit: "", matched: null });
    expect(matcher.push("|>trailing")).toEqual({ emit: "", matched: "<|end|>" });
    // Finished: later input is dropped.
    expect(matcher.push("more")).toEqual({ emit: "", matched: null });
    expect(matcher.flush()).toBe("");
  });

  it("releases a held prefix as soon as it can no longer be a stop string", () => {
    const matcher = new StopMatcher(["</answer>"]);
    expect(matcher.push("x </an")).toEqual({ emit: "x ", matched: null });
    expect(matcher.push("d")).toEqual({ emit: "</and", matched: null });
    // Only the part that may still start the stop string stays held: "<" here, not "a <".
    expect(matcher.push("a <")).toEqual({ emit: "a ", matched: null });
    expect(matcher.push("<")).toEqual({ emit: "<", matched: null });
    expect(matcher.flush()).toBe("<");
  });

  it("holds the longest suffix that starts any stop string", () => {
    const matcher = new StopMatcher(["ab", "xyz"]);
    expect(matcher.push("1xy")).toEqual({ emit: "1", matched: null });
    expect(matcher.push("a")).toEqual({ emit: "xy", matched: null });
    expect(matcher.push("b")).toEqual({ emit: "", matched: "ab" });
  });

  it("flush releases held text at the end of generation", () => {
    const matcher = new StopMatcher(["END"]);
    expect(matcher.push("almost EN")).toEqual({ emit: "almost ", matched: null });
    expect(matcher.flush()).toBe("EN");
    expect(matcher.flush()).toBe("");
  });

  it("never splits a surrogate pair when holding text", () => {
    // The stop starts like the emoji in the text (same high surrogate, different low one).
    const matcher = new StopMatcher(["😀"]);
    expect(matcher.push("a\uD83D")).toEqual({ emit: "a", matched: null });
    expect(matcher.push("\uDE01b")).toEqual({ emit: "😁b", matched: null });
    // A delta that ends mid-pair keeps its high half back even with no stop string in sight.
    const other = new StopMatcher(["zz"]);
    expect(other.push("ok\uD83D")).toEqual({ emit: "ok", matched: null });
    expect(other.push("\uDE00!")).toEqual({ emit: "😀!", matched: null });
    // The same with a stop string that begins with an emoji.
    const emoji = new StopMatcher(["🛑 halt"]);
    expect(emoji.push("go 🛑 ha")).toEqual({ emit: "go ", matched: null });
    expect(emoji.flush()).toBe("🛑 ha");
  });

  it("ignores empty stop strings and passes text through without stops", () => {
    expect(run([""], ["a", "b"])).toMatchObject({ emitted: "ab", matched: null });
    expect(run(["", "b"], ["a", "b"])).toMatchObject({ emitted: "a", matched: "b" });
    const none = new StopMatcher([]);
    expect(none.push("anything <")).toEqual({ emit: "anything <", matched: null });
    expect(none.flush()).toBe("");
  });
});
