/**
 * The safetensors format, read and written by us (the npm package of that name is a browser toy).
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON — `{"__metadata__": {str: str},
 * "<tensor>": {"dtype", "shape", "data_offsets": [begin, end]}, …}` with offsets relative to the
 * data section that follows — then the tensors' bytes. Tensors are read one at a time at their file
 * offsets, so a multi-gigabyte shard never sits in JS memory whole. Every structural fact is checked
 * before it is trusted; a violation names the file and the tensor.
 */
import { randomBytes } from "node:crypto";
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export const SAFETENSORS_DTYPE_BYTES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPE_BYTES;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file. */
  fileOffset: number;
  byteLength: number;
}

/** A file that is not valid safetensors; the message names the file (and tensor, when there is one). */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

/** Headers are small (a few hundred KB for the largest models); anything huge is corruption. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** The first read of a file: the header's length and, where it fits, the header. */
const FIRST_READ_BYTES = 64 * 1024;

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    /** The open file, for reads beyond `read` (its owner closes it with `close`). */
    readonly handle: FileHandle,
    /** The file's size when it was opened. */
    readonly size: number,
    readonly metadata: Readonly<Record<string, string>>,
    readonly tensors: ReadonlyMap<string, TensorEntry>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    const handle = await open(path, "r");
    try {
      const { size } = await handle.stat();
      const fail = (message: string) => new SafetensorsError(`${path}: ${message}`);
      if (size < 8) throw fail(`${size} bytes is too short for a safetensors header (truncated?)`);
      // The length and, most often, the whole header in one read (each read is a round trip through
      // libuv's thread pool: an agent file's reload opens with a few of them).
      const buffer = Buffer.alloc(Math.min(size, FIRST_READ_BYTES));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      if (bytesRead < 8) throw fail(`read ${bytesRead} bytes of a ${size}-byte file (truncated while read?)`);
      const first = buffer.subarray(0, bytesRead);
      const headerLength = first.readBigUInt64LE(0);
      if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
        throw fail(
          `header length ${headerLength} does not fit in a file of ${size} bytes (truncated or not safetensors)`,
        );
      }
      let headerBytes = first.subarray(8, 8 + Number(headerLength));
      if (headerBytes.length < headerLength) {
        headerBytes = Buffer.alloc(Number(headerLength));
        await handle.read(headerBytes, 0, headerBytes.length, 8);
      }
      let header: unknown;
      try {
        header = JSON.parse(headerBytes.toString("utf8"));
      } catch (error) {
        throw fail(`header is not valid JSON: ${(error as Error).message}`);
      }
      const dataStart = 8 + headerBytes.length;
      const { metadata, tensors } = parseHeader(header, dataStart, size - dataStart, fail);
      return new SafetensorsFile(path, handle, size, metadata, tensors);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  entry(name: string): TensorEntry {
    const entry = this.tensors.get(name);
    if (!entry) throw new SafetensorsError(`${this.path}: no tensor named "${name}"`);
    return entry;
  }

  /** The raw little-endian bytes of one tensor. */
  async read(name: string): Promise<Uint8Array> {
    const entry = this.entry(name);
    const bytes = new Uint8Array(entry.byteLength);
    const { bytesRead } = await this.handle.read(bytes, 0, entry.byteLength, entry.fileOffset);
    if (bytesRead !== entry.byteLength) {
      throw new SafetensorsError(`${this.path}: tensor "${name}": read ${bytesRead} of ${entry.byteLength} bytes`);
    }
    return bytes;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

function parseHeader(
  header: unknown,
  dataStart: number,
  dataBytes: number,
  fail: (message: string) => SafetensorsError,
): { metadata: Record<string, string>; tensors: Map<string, TensorEntry> } {
  if (header === null || typeof header !== "object" || Array.isArray(header)) throw fail("header is not a JSON object");
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  const spans: [number, number, string][] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      // MLX's writer emits `"__metadata__": null` when there is none.
      if (value === null) continue;
      if (typeof value !== "object") throw fail("__metadata__ is not an object");
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (typeof item !== "string") throw fail(`__metadata__.${key} is not a string`);
        metadata[key] = item;
      }
      continue;
    }
    const bad = (message: string) => fail(`tensor "${name}": ${message}`);
    const { dtype, shape, data_offsets: offsets } = (value ?? {}) as Record<string, unknown>;
    if (typeof dtype !== "string" || !(dtype in SAFETENSORS_DTYPE_BYTES)) {
      throw bad(
        `unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")})`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((dim) => Number.isSafeInteger(dim) && (dim as number) >= 0)) {
      throw bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((offset) => Number.isSafeInteger(offset) && (offset as number) >= 0)
    ) {
      throw bad(`data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    const expected =
      (shape as number[]).reduce((product, dim) => product * dim, 1) *
      SAFETENSORS_DTYPE_BYTES[dtype as SafetensorsDType];
    if (end - begin !== expected) {
      throw bad(`data_offsets span ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${expected}`);
    }
    if (end > dataBytes) throw bad(`data ends at byte ${end} of a ${dataBytes}-byte data section (truncated file?)`);
    spans.push([begin, end, name]);
    tensors.set(name, {
      name,
      dtype: dtype as SafetensorsDType,
      shape: shape as number[],
      fileOffset: dataStart + begin,
      byteLength: expected,
    });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i]![0] < spans[i - 1]![1]) throw fail(`tensors "${spans[i - 1]![2]}" and "${spans[i]![2]}" overlap`);
  }
  return { metadata, tensors };
}

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: Uint8Array;
}

/**
 * Writes a safetensors file atomically: into a temporary file beside the target, fsync'd, renamed
 * over the target, and the directory fsync'd — a crash leaves either the old file or the new one.
 * The header is padded with spaces so the data section starts 8-byte aligned.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string> = {},
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const tensor of tensors) {
    const expected = tensor.shape.reduce((product, dim) => product * dim, 1) * SAFETENSORS_DTYPE_BYTES[tensor.dtype];
    if (tensor.data.byteLength !== expected) {
      throw new SafetensorsError(
        `${path}: tensor "${tensor.name}": ${tensor.data.byteLength} bytes for ${tensor.dtype} ${JSON.stringify(tensor.shape)} (needs ${expected})`,
      );
    }
    if (tensor.name in header) throw new SafetensorsError(`${path}: tensor "${tensor.name}" written twice`);
    header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  let headerText = JSON.stringify(header);
  headerText += " ".repeat((8 - ((8 + Buffer.byteLength(headerText)) % 8)) % 8);
  const headerBytes = Buffer.from(headerText, "utf8");
  const lengthBytes = Buffer.alloc(8);
  lengthBytes.writeBigUInt64LE(BigInt(headerBytes.length));

  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temporary, "wx");
  try {
    await writeAll(handle, [lengthBytes, headerBytes, ...tensors.map((tensor) => tensor.data)]);
    await handle.sync();
    await handle.close();
    await rename(temporary, path);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  const directory = await open(dirname(path), "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/** Gathered writes: many small tensors cost one syscall per few MiB, and no tensor is copied. */
const WRITE_GROUP_BYTES = 8 * 1024 * 1024;
const WRITE_GROUP_BUFFERS = 256;

/** Writes the buffers in order at the file's position, resuming after a short write. */
async function writeAll(handle: FileHandle, buffers: readonly Uint8Array[]): Promise<void> {
  const pending = buffers.filter((buffer) => buffer.byteLength > 0);
  let next = 0;
  while (next < pending.length) {
    const group = [pending[next]!];
    let groupBytes = group[0]!.byteLength;
    for (let i = next + 1; i < pending.length && group.length < WRITE_GROUP_BUFFERS; i++) {
      if (groupBytes + pending[i]!.byteLength > WRITE_GROUP_BYTES) break;
      group.push(pending[i]!);
      groupBytes += pending[i]!.byteLength;
    }
    let { bytesWritten } = await handle.writev(group);
    if (bytesWritten === 0) throw new Error(`write of ${groupBytes} bytes made no progress`);
    while (bytesWritten > 0) {
      const first = pending[next]!;
      if (first.byteLength <= bytesWritten) {
        bytesWritten -= first.byteLength;
        next++;
      } else {
        pending[next] = first.subarray(bytesWritten);
        bytesWritten = 0;
      }
    }
  }
}
