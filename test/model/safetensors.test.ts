/**
 * Our safetensors reader and writer against the reference Python implementation (each reads what the
 * other wrote), plus the malformed files a user can have: each error names the file and the tensor.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { SafetensorsError, SafetensorsFile, writeSafetensors } from "../../src/model/safetensors.js";
import { REPO_ROOT, scratchDir } from "../support/cli.js";

const run = promisify(execFile);
const ORACLE = join(REPO_ROOT, "test/support/python/safetensors_oracle.py");

const bytesOf = (array: ArrayBufferView) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength);

describe("safetensors", () => {
  it("reads what the Python reference wrote", async () => {
    const path = join(scratchDir(), "python.safetensors");
    const spec = [
      { name: "w", dtype: "F32", shape: [2, 3], values: [1.5, -2, 3, 4, 5.25, -6] },
      { name: "h", dtype: "F16", shape: [3], values: [0.5, -1, 65504] },
      { name: "ids", dtype: "I32", shape: [4], values: [1, -2, 3, 2147483647] },
      { name: "packed", dtype: "U32", shape: [2], values: [0, 4294967295] },
      { name: "flags", dtype: "U8", shape: [1, 2], values: [7, 255] },
      { name: "empty", dtype: "F32", shape: [0, 4], values: [] },
    ];
    await run("python3", [ORACLE, "write", path, JSON.stringify(spec)]);
    const file = await SafetensorsFile.open(path);
    try {
      expect(file.metadata).toEqual({ writer: "python" });
      expect([...file.tensors.keys()].sort()).toEqual(["empty", "flags", "h", "ids", "packed", "w"]);
      const w = await file.read("w");
      expect(Array.from(new Float32Array(w.buffer, w.byteOffset, 6))).toEqual([1.5, -2, 3, 4, 5.25, -6]);
      expect(file.entry("w")).toMatchObject({ dtype: "F32", shape: [2, 3], byteLength: 24 });
      expect(Array.from(new Uint16Array((await file.read("h")).slice().buffer))).toEqual([0x3800, 0xbc00, 0x7bff]);
      expect(Array.from(new Int32Array((await file.read("ids")).slice().buffer))).toEqual([1, -2, 3, 2147483647]);
      expect(Array.from(new Uint32Array((await file.read("packed")).slice().buffer))).toEqual([0, 4294967295]);
      expect(Array.from(await file.read("flags"))).toEqual([7, 255]);
      expect((await file.read("empty")).byteLength).toBe(0);
    } finally {
      await file.close();
    }
  });

  it("writes what the Python reference reads, atomically, leaving no temporary file", async () => {
    const dir = scratchDir();
    const path = join(dir, "ours.safetensors");
    await writeSafetensors(
      path,
      [
        { name: "a", dtype: "F32", shape: [3], data: bytesOf(new Float32Array([0.25, -8, 1e-3])) },
        { name: "bf", dtype: "BF16", shape: [2], data: bytesOf(new Uint16Array([0x3f80, 0xc000])) },
        { name: "q", dtype: "U32", shape: [1, 2], data: bytesOf(new Uint32Array([0xdeadbeef, 1])) },
      ],
      { format: "agent-memory-test", version: "1" },
    );
    expect(readdirSync(dir)).toEqual(["ours.safetensors"]);
    // The data section starts 8-byte aligned, as the reference writer also ensures.
    const headerLength = Number(readFileSync(path).readBigUInt64LE(0));
    expect((8 + headerLength) % 8).toBe(0);
    const { stdout } = await run("python3", [ORACLE, "read", path]);
    const read = JSON.parse(stdout) as {
      metadata: unknown;
      tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>;
    };
    expect(read.metadata).toEqual({ format: "agent-memory-test", version: "1" });
    expect(read.tensors.a).toEqual({ dtype: "float32", shape: [3], values: [0.25, -8, Math.fround(1e-3)] });
    expect(read.tensors.q).toEqual({ dtype: "uint32", shape: [1, 2], values: [0xdeadbeef, 1] });
    expect(read.tensors.bf).toEqual({ dtype: "BF16", shape: [2] });
    const reread = await SafetensorsFile.open(path);
    expect(Array.from(new Uint16Array((await reread.read("bf")).slice().buffer))).toEqual([0x3f80, 0xc000]);
    await reread.close();
  });

  it('reads the header MLX writes when there is no metadata ("__metadata__": null)', async () => {
    const path = join(scratchDir(), "mlx.safetensors");
    const header = Buffer.from('{"__metadata__":null,"a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}}');
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(path, Buffer.concat([length, header, Buffer.from(new Float32Array([1, -2]).buffer)]));
    const file = await SafetensorsFile.open(path);
    expect(file.metadata).toEqual({});
    expect(Array.from(new Float32Array((await file.read("a")).slice().buffer))).toEqual([1, -2]);
    await file.close();
  });

  it("reads a header longer than its first read of the file (64 KiB), and one that ends the file", async () => {
    const long = "x".repeat(100_000);
    const path = join(scratchDir(), "long-header.safetensors");
    const header = Buffer.from(
      JSON.stringify({ __metadata__: { long }, a: { data_offsets: [0, 4], dtype: "F32", shape: [1] } }),
    );
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(path, Buffer.concat([length, header, Buffer.from(new Float32Array([3.5]).buffer)]));
    const file = await SafetensorsFile.open(path);
    expect(file.metadata.long).toBe(long);
    expect(file.size).toBe(8 + header.length + 4);
    expect(Array.from(new Float32Array((await file.read("a")).slice().buffer))).toEqual([3.5]);
    await file.close();
    // No tensors: the header is the whole file, read in the first read.
    const empty = join(scratchDir(), "empty.safetensors");
    const emptyHeader = Buffer.from('{"__metadata__":{"k":"v"}}');
    const emptyLength = Buffer.alloc(8);
    emptyLength.writeBigUInt64LE(BigInt(emptyHeader.length));
    writeFileSync(empty, Buffer.concat([emptyLength, emptyHeader]));
    const none = await SafetensorsFile.open(empty);
    expect(none.metadata).toEqual({ k: "v" });
    expect(none.tensors.size).toBe(0);
    await none.close();
  });

  it("refuses data that does not match its dtype and shape, naming the tensor", async () => {
    const path = join(scratchDir(), "bad.safetensors");
    await expect(
      writeSafetensors(path, [{ name: "x", dtype: "F32", shape: [2], data: new Uint8Array(4) }]),
    ).rejects.toThrow(`${path}: tensor "x": 4 bytes for F32 [2] (needs 8)`);
  });

  describe("malformed files fail at open with one line naming the file and tensor", () => {
    async function validFile(): Promise<Buffer> {
      const path = join(scratchDir(), "valid.safetensors");
      await writeSafetensors(path, [
        { name: "first", dtype: "F32", shape: [4], data: new Uint8Array(16) },
        { name: "second", dtype: "F32", shape: [2], data: new Uint8Array(8) },
      ]);
      return readFileSync(path);
    }
    function withHeader(header: unknown, dataBytes = 24): Buffer {
      const text = Buffer.from(JSON.stringify(header));
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(text.length));
      return Buffer.concat([length, text, Buffer.alloc(dataBytes)]);
    }
    const cases: [string, () => Promise<Buffer> | Buffer, RegExp][] = [
      [
        "truncated data",
        async () => (await validFile()).subarray(0, -4),
        /tensor "second": data ends at byte 24 of a 20-byte data section \(truncated file\?\)/,
      ],
      [
        "truncated header",
        async () => (await validFile()).subarray(0, 20),
        /header length \d+ does not fit in a file of 20 bytes/,
      ],
      ["too short", () => Buffer.alloc(5), /5 bytes is too short/],
      [
        "not JSON",
        () => Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{{{{")]),
        /header is not valid JSON/,
      ],
      [
        "unknown dtype",
        () => withHeader({ t: { dtype: "F8_E4M3", shape: [1], data_offsets: [0, 1] } }),
        /tensor "t": unsupported dtype "F8_E4M3"/,
      ],
      [
        "size mismatch",
        () => withHeader({ t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }),
        /tensor "t": data_offsets span 8 bytes but F32 \[3\] needs 12/,
      ],
      [
        "overlap",
        () =>
          withHeader({
            a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
            b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
          }),
        /tensors "a" and "b" overlap/,
      ],
      [
        "bad shape",
        () => withHeader({ t: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }),
        /tensor "t": shape \[-1\] is not a list/,
      ],
    ];
    for (const [label, make, expected] of cases) {
      it(label, async () => {
        const path = join(scratchDir(), `${label.replaceAll(" ", "-")}.safetensors`);
        writeFileSync(path, await make());
        const attempt = SafetensorsFile.open(path);
        await expect(attempt).rejects.toThrow(SafetensorsError);
        await expect(SafetensorsFile.open(path)).rejects.toThrow(
          new RegExp(`^${path.replaceAll("/", "\\/").replaceAll(".", "\\.")}: ${expected.source}`),
        );
      });
    }
  });
});
