/**
 * The reader threads of a warm reload: each task reads a run of a real file and returns it with the
 * CRC-32 of each block, checked against zlib's on the main thread; recycled buffers come back with
 * new contents, and new buffers are made large enough to be recycled for longer runs; a file shorter than the run, and a closed descriptor, reject instead of returning
 * short or stale data.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { crc32 } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { EndOfFileError, ReadPool } from "../../src/memory/read-pool.js";
import { REPO_ROOT } from "../support/cli.js";

const run = promisify(execFile);

const directory = mkdtempSync(join(tmpdir(), "read-pool-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe("ReadPool", () => {
  it("reads runs in parallel and checksums each block, more tasks than threads, through recycled buffers", async () => {
    const pool = new ReadPool(2);
    const content = randomBytes(3 * 1024 * 1024 + 123);
    const path = join(directory, "blocks.bin");
    writeFileSync(path, content);
    const fd = openSync(path, "r");
    try {
      const blockBytes = 64 * 1024;
      const runBytes = 5 * blockBytes + 1000; // a shorter last block
      const positions = Array.from({ length: 9 }, (_, i) => 17 + i * runBytes);
      const check = (position: number, run: { bytes: Uint8Array; crcs: Uint32Array }) => {
        const expected = content.subarray(position, position + runBytes);
        expect(Buffer.from(run.bytes).equals(expected), `bytes at ${position}`).toBe(true);
        const crcs = Array.from({ length: 6 }, (_, i) =>
          crc32(expected.subarray(i * blockBytes, (i + 1) * blockBytes)),
        );
        expect(Array.from(run.crcs), `CRCs at ${position}`).toEqual(crcs);
      };
      const runs = await Promise.all(positions.map((position) => pool.read(fd, runBytes, position, blockBytes)));
      runs.forEach((run, i) => check(positions[i]!, run));
      // Given back, the buffers carry the next reads (in reverse order, so each gets other bytes).
      for (const run of runs) pool.recycle(run.bytes);
      const again = await Promise.all(
        positions.reverse().map((position) => pool.read(fd, runBytes, position, blockBytes)),
      );
      again.forEach((run, i) => check(positions[i]!, run));
      // Recycled buffers were transferred to the readers (detached here), not left for the collector.
      expect(runs.filter((run) => run.bytes.buffer.byteLength === 0).length).toBeGreaterThanOrEqual(5);
    } finally {
      closeSync(fd);
    }
  });

  it("hands each read the smallest kept buffer that holds it, and keeps the largest ones", async () => {
    const pool = new ReadPool(1);
    const content = randomBytes(2 * 1024 * 1024);
    const path = join(directory, "sizes.bin");
    writeFileSync(path, content);
    const fd = openSync(path, "r");
    const read = (bytes: number) => pool.read(fd, bytes, 0, bytes);
    try {
      // A read returns its bytes in the buffer it was given when that was large enough, else in a new
      // one of its own size: the buffer's length says which.
      const large = await read(1024 * 1024);
      const small = await read(16 * 1024);
      pool.recycle(large.bytes);
      pool.recycle(small.bytes);
      // The small buffer was given back last; the large read still gets the large one...
      const big = await read(512 * 1024);
      expect(big.bytes.buffer.byteLength).toBe(1024 * 1024);
      expect(Buffer.from(big.bytes).equals(content.subarray(0, 512 * 1024))).toBe(true);
      // ...and a small read the small one, not the large one.
      const little = await read(8 * 1024);
      expect(little.bytes.buffer.byteLength).toBe(16 * 1024);
      // Beyond the few it keeps (2 · threads + 1 = 3), the pool drops the smallest.
      const runs = await Promise.all([4, 8, 12, 16].map((kib) => read(kib * 1024)));
      for (const run of runs) pool.recycle(run.bytes);
      const kept = await Promise.all([16, 12, 8].map((kib) => read(kib * 1024)));
      expect(kept.map((run) => run.bytes.buffer.byteLength / 1024)).toEqual([16, 12, 8]);
      const unkept = await read(4 * 1024);
      expect(unkept.bytes.buffer.byteLength).toBe(4 * 1024);
    } finally {
      closeSync(fd);
    }
  });

  it("gives a new buffer the capacity asked for, so a longer run later reuses it; start makes 2 · size buffers", async () => {
    const content = randomBytes(256 * 1024);
    const path = join(directory, "capacity.bin");
    writeFileSync(path, content);
    const fd = openSync(path, "r");
    try {
      const pool = new ReadPool(1);
      // A short run in a buffer of the capacity asked for, returned with only the run's bytes...
      const short = await pool.read(fd, 16 * 1024, 100, 4096, 128 * 1024);
      expect(short.bytes.byteLength).toBe(16 * 1024);
      expect(short.bytes.buffer.byteLength).toBe(128 * 1024);
      expect(Buffer.from(short.bytes).equals(content.subarray(100, 100 + 16 * 1024))).toBe(true);
      // ...and given back, it carries a longer run (a buffer of the run's size would not have).
      pool.recycle(short.bytes);
      const longer = await pool.read(fd, 96 * 1024, 5000, 4096);
      expect(longer.bytes.buffer.byteLength).toBe(128 * 1024);
      expect(Buffer.from(longer.bytes).equals(content.subarray(5000, 5000 + 96 * 1024))).toBe(true);
      // A run longer than the capacity gets a buffer of its own size.
      const long = await pool.read(fd, 200 * 1024, 0, 4096, 128 * 1024);
      expect(long.bytes.buffer.byteLength).toBe(200 * 1024);

      // start(bytes): the two reads in flight per thread find kept buffers of that size, and starting
      // again makes no more.
      const started = new ReadPool(2);
      started.start(64 * 1024);
      started.start(64 * 1024);
      const runs = await Promise.all([0, 1, 2, 3, 4].map((i) => started.read(fd, 32 * 1024, i * 1000, 4096)));
      expect(runs.map((run) => run.bytes.buffer.byteLength)).toEqual([65536, 65536, 65536, 65536, 32768]);
      runs.forEach((run, i) => {
        expect(Buffer.from(run.bytes).equals(content.subarray(i * 1000, i * 1000 + 32 * 1024))).toBe(true);
      });
    } finally {
      closeSync(fd);
    }
  });

  it("does not keep the process alive once idle, started at once or used", async () => {
    const module = join(REPO_ROOT, "dist/src/memory/read-pool.js");
    const script = join(directory, "alive.mjs");
    writeFileSync(join(directory, "alive.bin"), randomBytes(1024));
    writeFileSync(
      script,
      `import { openSync, closeSync } from "node:fs";
      import { ReadPool } from ${JSON.stringify(module)};
      const started = new ReadPool(2);
      started.start();
      const used = new ReadPool(2);
      const fd = openSync(${JSON.stringify(join(directory, "alive.bin"))}, "r");
      await used.read(fd, 1024, 0, 1024);
      closeSync(fd);
      console.log("idle");`,
    );
    const { stdout } = await run(process.execPath, [script], { timeout: 20_000 });
    expect(stdout.trim()).toBe("idle"); // and it exited by itself: execFile would have timed out
  });

  it("starts its threads on first use, or all at once when asked (a server start), never more than its size", async () => {
    const lazy = new ReadPool(3);
    expect(lazy.threads).toBe(0);
    const path = join(directory, "small.bin");
    writeFileSync(path, randomBytes(4096));
    const fd = openSync(path, "r");
    try {
      await lazy.read(fd, 4096, 0, 4096);
      expect(lazy.threads).toBe(1);
      const eager = new ReadPool(3);
      eager.start();
      expect(eager.threads).toBe(3);
      await Promise.all(Array.from({ length: 6 }, () => eager.read(fd, 4096, 0, 4096)));
      eager.start();
      expect(eager.threads).toBe(3);
    } finally {
      closeSync(fd);
    }
  });

  it("rejects a run past the end of the file with where the file ends, and a closed descriptor", async () => {
    const pool = new ReadPool(2);
    const path = join(directory, "short.bin");
    writeFileSync(path, randomBytes(1000));
    const fd = openSync(path, "r");
    const failure = await pool.read(fd, 2048, 100, 512).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(EndOfFileError);
    expect((failure as EndOfFileError).position).toBe(1000);
    closeSync(fd);
    await expect(pool.read(fd, 512, 0, 512)).rejects.toThrow(/EBADF|bad file descriptor/i);
    // The pool still works after failures.
    const again = openSync(path, "r");
    try {
      const run = await pool.read(again, 1000, 0, 1000);
      expect(run.crcs[0]).toBe(crc32(run.bytes));
    } finally {
      closeSync(again);
    }
  });
});
