/**
 * The block hash chain: a block's hash names every token up to it and the tenant, and hashes kept from
 * an earlier turn are reused for the blocks a new prompt shares with it, giving exactly the hashes a
 * full recomputation gives.
 */
import { describe, expect, it } from "vitest";
import { blockHashes } from "../../src/memory/prefix-index.js";

const tokens = (length: number, seed: number) => Array.from({ length }, (_, i) => (i * 7919 + seed * 104729) % 50_000);

describe("block hashes", () => {
  it("depend on every earlier token and on the tenant", () => {
    const base = tokens(64, 1);
    const changed = [...base];
    changed[3] = changed[3]! + 1;
    const [a, b] = [blockHashes("t", base, 16), blockHashes("t", changed, 16)];
    expect(a).toHaveLength(4);
    expect(a.every((hash, i) => hash !== b[i])).toBe(true);
    expect(blockHashes("other", base, 16)[0]).not.toBe(a[0]);
    expect(blockHashes("t", base.slice(0, 40), 16)).toEqual(a.slice(0, 2));
    expect(blockHashes("t", base, 16, null, 40)).toEqual(a.slice(0, 2));
    expect(blockHashes("t", base, 16, { hashes: a, blocks: 1 }, 47)).toEqual(a.slice(0, 2));
  });

  it("reuse known hashes of a shared prefix and give what a full recomputation gives", () => {
    const turn = tokens(1000, 2);
    const known = blockHashes("t", turn, 16);
    for (const shared of [0, 15, 16, 500, 999, 1000]) {
      const next = [...turn.slice(0, shared), ...tokens(300, 3)];
      const blocks = Math.floor(shared / 16);
      expect(blockHashes("t", next, 16, { hashes: known, blocks }), `shared ${shared}`).toEqual(
        blockHashes("t", next, 16),
      );
    }
  });
});
