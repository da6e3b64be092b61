/**
 * The host memory evictions read agents back into: a buffer given back is the next one taken (its
 * pages are already there), and no more than the stated bytes are kept.
 */
import { describe, expect, it } from "vitest";
import { SnapshotBuffers } from "../../src/memory/snapshot-buffers.js";

describe("SnapshotBuffers", () => {
  it("hands back buffers it was given, keeps at most keepBytes, and makes new ones beyond", () => {
    const buffers = new SnapshotBuffers(1024, 2048);
    const taken = [buffers.take(1024), buffers.take(1024), buffers.take(1024)];
    expect(taken.map((buffer) => buffer.byteLength)).toEqual([1024, 1024, 1024]);
    expect(new Set(taken.map((buffer) => buffer.buffer)).size).toBe(3);
    buffers.give(taken);
    expect(buffers.keptBytes).toBe(2048); // the third was left to the collector
    // A kept buffer serves a smaller request too (the caller fills the part it needs).
    const again = [buffers.take(1024), buffers.take(100), buffers.take(1024)];
    expect(again.filter((buffer) => taken.includes(buffer))).toHaveLength(2);
    expect(again[2]).not.toBe(taken[2]);
    expect(buffers.keptBytes).toBe(0);
    expect(() => buffers.take(1025)).toThrow("snapshot buffers hold 1024 bytes, asked 1025");
  });

  it("gives a small snapshot a buffer of its own size when none is kept, and does not keep it", () => {
    const buffers = new SnapshotBuffers(1024, 4096);
    const small = buffers.take(96);
    expect(small.byteLength).toBe(96);
    buffers.give([small]);
    expect(buffers.keptBytes).toBe(0);
  });
});
