/**
 * The host memory evictions read agents back into: a buffer given back is the next one taken (its
 * pages are already there), and no more than the stated bytes are kept.
 */
import { describe, expect, it } from "vitest";
import { SnapshotBuffers } from "../../src/memory/snapshot-buffers.js";

describe("SnapshotBuffers", () => {
  it("hands back buffers it was given, keeps at most keepBytes, and makes new ones beyond", () => {
    const buffers = new SnapshotBuffers(1024, 2048);
    const taken = [buffers.take(), buffers.take(), buffers.take()];
    expect(taken.map((buffer) => buffer.byteLength)).toEqual([1024, 1024, 1024]);
    expect(new Set(taken.map((buffer) => buffer.buffer)).size).toBe(3);
    buffers.give(taken);
    expect(buffers.keptBytes).toBe(2048); // the third was left to the collector
    const again = [buffers.take(), buffers.take(), buffers.take()];
    expect(again.filter((buffer) => taken.includes(buffer))).toHaveLength(2);
    expect(again[2]).not.toBe(taken[2]);
    expect(buffers.keptBytes).toBe(0);
  });
});
