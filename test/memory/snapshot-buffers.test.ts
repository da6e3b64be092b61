/**
 * The host memory evictions read agents back into: a buffer given back is the next one taken (its
 * pages are already there), no more than the stated bytes are kept, and a snapshot beyond them gets
 * a few large allocations cut into views, never kept.
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

  it("takes kept buffers first, new ones up to keepBytes, and beyond them views into a few large allocations", () => {
    const buffers = new SnapshotBuffers(1024, 2048, 4096); // allocations beyond keepBytes: 4 buffers each
    const first = buffers.takeAll([1024, 1024, 1024, 1024, 1024, 1024, 1024, 300]);
    expect(first.map((buffer) => buffer.byteLength)).toEqual([1024, 1024, 1024, 1024, 1024, 1024, 1024, 300]);
    // Two of their own (keepBytes), then six batches in two allocations (four, then two).
    expect(new Set(first.map((buffer) => buffer.buffer)).size).toBe(4);
    expect(first[0]!.buffer).not.toBe(first[1]!.buffer);
    expect(new Set(first.slice(2, 6).map((buffer) => buffer.buffer)).size).toBe(1);
    expect(first[6]!.buffer).toBe(first[7]!.buffer);
    expect(first[5]!.buffer).not.toBe(first[6]!.buffer);
    // The views do not overlap.
    first.forEach((buffer, i) => buffer.fill(i));
    first.forEach((buffer, i) => expect(buffer.every((value) => value === i)).toBe(true));
    // Given back, the two of their own are kept, no view is.
    buffers.give(first);
    expect(buffers.keptBytes).toBe(2048);
    const again = buffers.takeAll([1024, 1024, 1024]);
    expect(again.slice(0, 2).every((buffer) => first.slice(0, 2).includes(buffer))).toBe(true);
    expect(first.some((buffer) => buffer.buffer === again[2]!.buffer)).toBe(false);
    expect(buffers.keptBytes).toBe(0);
    buffers.give(again);
    expect(buffers.keptBytes).toBe(2048);
  });

  it("gives a small snapshot a buffer of its own size when none is kept, and does not keep it", () => {
    const buffers = new SnapshotBuffers(1024, 4096);
    const small = buffers.take(96);
    expect(small.byteLength).toBe(96);
    buffers.give([small]);
    expect(buffers.keptBytes).toBe(0);
  });
});
