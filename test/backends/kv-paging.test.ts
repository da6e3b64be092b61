import { describe, expect, it } from "vitest";
import type { KvCacheSpec } from "../../backends/contract.js";
import { OutOfKvBlocksError, PagedKv } from "../../backends/kv-paging.js";

/** A KvCache that only records the block copies asked of it: PagedKv never touches the storage itself. */
function fakeCache(blockCount: number, blockSize = 4) {
  const spec: KvCacheSpec = {
    layers: 1,
    kvHeads: 1,
    headDim: 8,
    blockSize,
    blockCount,
    storage: { kind: "float", dtype: "f32" },
  };
  const copies: [number, number][] = [];
  return {
    copies,
    cache: {
      spec,
      copyBlocks: (pairs: readonly (readonly [number, number])[]) => {
        for (const [source, destination] of pairs) copies.push([source, destination]);
      },
    },
  };
}

describe("PagedKv", () => {
  it("gives each appended token a slot = block·blockSize + offset, allocating blocks as they fill", () => {
    const { cache } = fakeCache(8);
    const kv = new PagedKv(cache);
    const sequence = kv.create();
    expect([...kv.append(sequence, 3)]).toEqual([0, 1, 2]);
    expect([...kv.append(sequence, 6)]).toEqual([3, 4, 5, 6, 7, 8]);
    expect(kv.blockTable(sequence)).toEqual([0, 1, 2]);
    expect(kv.length(sequence)).toBe(9);
    expect(kv.freeBlockCount).toBe(5);
  });

  it("keeps the sequences of a ragged batch in separate blocks", () => {
    const { cache } = fakeCache(8);
    const kv = new PagedKv(cache);
    const [a, b] = [kv.create(), kv.create()];
    kv.append(a, 2);
    const slotsOfB = kv.append(b, 2);
    const slotsOfA = kv.append(a, 3);
    expect(kv.blockTable(a)).toEqual([0, 2]);
    expect(kv.blockTable(b)).toEqual([1]);
    expect([...slotsOfA]).toEqual([2, 3, 8]);
    expect([...slotsOfB]).toEqual([4, 5]);
  });

  it("trim gives back whole blocks past the new length and appends after it", () => {
    const { cache } = fakeCache(8);
    const kv = new PagedKv(cache);
    const sequence = kv.create();
    kv.append(sequence, 10);
    kv.trim(sequence, 5);
    expect(kv.blockTable(sequence)).toEqual([0, 1]);
    expect(kv.freeBlockCount).toBe(6);
    expect([...kv.append(sequence, 1)]).toEqual([5]);
    kv.trim(sequence, 0);
    expect(kv.blockTable(sequence)).toEqual([]);
    expect(kv.freeBlockCount).toBe(8);
    expect(() => kv.trim(sequence, 1)).toThrow("outside the sequence's 0…0");
  });

  it("fork shares full blocks and copies a partly filled last block", () => {
    const { cache, copies } = fakeCache(8);
    const kv = new PagedKv(cache);
    const source = kv.create();
    kv.append(source, 10); // blocks 0, 1 full; 2 holds two tokens
    const child = kv.fork(source);
    expect(kv.blockTable(child)).toEqual([0, 1, 3]);
    expect(copies).toEqual([[2, 3]]);
    expect([kv.references(0), kv.references(1), kv.references(2), kv.references(3)]).toEqual([2, 2, 1, 1]);
    const atBoundary = kv.fork(source, 8);
    expect(kv.blockTable(atBoundary)).toEqual([0, 1]);
    expect(copies).toHaveLength(1);
  });

  it("copies a shared last block before writing into it, leaving the other sharer's block alone", () => {
    const { cache, copies } = fakeCache(8);
    const kv = new PagedKv(cache);
    const source = kv.create();
    kv.append(source, 8);
    const child = kv.fork(source);
    kv.trim(child, 6); // child's last block (1) is still shared and now partly filled
    const slots = kv.append(child, 3);
    expect(copies).toEqual([[1, 2]]);
    expect(kv.blockTable(child)).toEqual([0, 2, 3]);
    expect([...slots]).toEqual([10, 11, 12]);
    expect(kv.blockTable(source)).toEqual([0, 1]);
    expect(kv.references(1)).toBe(1);
    // Appending to a full shared block needs no copy: the new tokens go to a new block.
    const second = kv.fork(source);
    kv.append(second, 1);
    expect(copies).toHaveLength(1);
  });

  it("free releases only blocks no other sequence references", () => {
    const { cache } = fakeCache(4);
    const kv = new PagedKv(cache);
    const source = kv.create();
    kv.append(source, 8);
    const child = kv.fork(source);
    kv.free(source);
    expect(kv.freeBlockCount).toBe(2);
    expect(kv.blockTable(child)).toEqual([0, 1]);
    kv.free(child);
    expect(kv.freeBlockCount).toBe(4);
    expect(() => kv.length(child)).toThrow("does not exist");
  });

  it("fails clearly when out of blocks, changing nothing", () => {
    const { cache, copies } = fakeCache(3);
    const kv = new PagedKv(cache);
    const source = kv.create();
    kv.append(source, 6); // 2 blocks, the second half full
    const child = kv.fork(source, 4);
    kv.trim(source, 5);
    kv.append(kv.create(), 1); // the last free block
    expect(() => kv.append(child, 5)).toThrow(OutOfKvBlocksError);
    expect(() => kv.append(child, 5)).toThrow("need 2 more, 0 of 3 are free");
    expect(kv.length(child)).toBe(4);
    expect(kv.blockTable(child)).toEqual([0]);
    expect(() => kv.fork(source)).toThrow("need 1 more");
    expect(copies).toEqual([]);
  });

  it("hands out the longest-free block first, so freed contents survive as long as possible", () => {
    const { cache } = fakeCache(4);
    const kv = new PagedKv(cache);
    const a = kv.create();
    kv.append(a, 8); // blocks 0, 1
    const b = kv.create();
    kv.append(b, 4); // block 2
    kv.free(a); // 0 and 1 become free after 3
    const c = kv.create();
    kv.append(c, 8);
    expect(kv.blockTable(c)).toEqual([3, 0]);
  });

  it("keeps the oldest-freed-first order through many frees, adoptions and allocations", () => {
    // A reference model of the free pool (an array in the order blocks became free) against random
    // work: every block handed out must be the model's oldest, every adoption takes its block out.
    const blockCount = 64;
    const { cache } = fakeCache(blockCount, 1);
    const kv = new PagedKv(cache);
    let seed = 12345;
    const randomBelow = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const model = Array.from({ length: blockCount }, (_, block) => block);
    const live: number[] = [];
    for (let step = 0; step < 3000; step++) {
      const action = randomBelow(3);
      if (action === 0 && model.length > 0) {
        const sequence = kv.create();
        const count = 1 + randomBelow(Math.min(4, model.length));
        kv.append(sequence, count);
        expect(kv.blockTable(sequence)).toEqual(model.splice(0, count));
        live.push(sequence);
      } else if (action === 1 && live.length > 0) {
        const [sequence] = live.splice(randomBelow(live.length), 1);
        const blocks = kv.blockTable(sequence!);
        kv.free(sequence!);
        for (const block of blocks) if (kv.references(block) === 0) model.push(block);
      } else if (model.length > 0) {
        const block = model[randomBelow(model.length)]!;
        model.splice(model.indexOf(block), 1);
        live.push(kv.adopt([block], 1));
      }
      expect(kv.freeBlockCount).toBe(model.length);
    }
  });

  it("counts generations, and adopts blocks in use or still holding freed contents", () => {
    const { cache } = fakeCache(6);
    const kv = new PagedKv(cache);
    const source = kv.create();
    kv.append(source, 8);
    const [first, second] = kv.blockTable(source);
    expect([kv.generation(first!), kv.generation(second!)]).toEqual([1, 1]);
    const sharing = kv.adopt([first!], 4);
    expect(kv.references(first!)).toBe(2);
    kv.free(source);
    expect(kv.references(second!)).toBe(0);
    // The freed block is adopted back before anyone else took it: same generation, no copy.
    const revived = kv.adopt([first!, second!], 8);
    expect(kv.references(second!)).toBe(1);
    expect(kv.generation(second!)).toBe(1);
    expect(kv.freeBlockCount).toBe(4);
    // Appending after adopted full blocks never writes into them: the new tokens get a new block.
    kv.free(revived);
    kv.append(sharing, 2);
    expect(kv.length(sharing)).toBe(6);
    expect(kv.blockTable(sharing)[0]).toBe(first);
    expect(kv.blockTable(sharing)).toHaveLength(2);
    expect(() => kv.adopt([first!, first!], 8)).toThrow("repeats a block");
    expect(() => kv.adopt([first!], 5)).toThrow("cannot hold exactly 5 tokens");
  });
});
