/**
 * A safetensors writer for files too big to hold in memory: the header is fixed up front from the
 * tensors' names, dtypes and shapes, then each tensor's bytes are written at their place as they are
 * produced, in any order and in pieces. Same file as writeSafetensors() in ../safetensors.ts (header
 * padded with spaces to an 8-byte boundary, tensors in the order given) and the same atomicity: a
 * temporary file beside the target, fsync'd, renamed over it, and the directory fsync'd.
 */
import { randomBytes } from "node:crypto";
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { SAFETENSORS_DTYPE_BYTES, SafetensorsError, type SafetensorsDType } from "../safetensors.js";

export interface TensorHeader {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
}

interface Slot {
  /** Absolute file offset of the tensor's first byte. */
  start: number;
  byteLength: number;
  written: number;
}

export class SafetensorsStreamWriter {
  private constructor(
    readonly path: string,
    private readonly temporary: string,
    private readonly handle: FileHandle,
    private readonly slots: ReadonlyMap<string, Slot>,
  ) {}

  static async create(
    path: string,
    tensors: readonly TensorHeader[],
    metadata: Record<string, string> = {},
  ): Promise<SafetensorsStreamWriter> {
    const header: Record<string, unknown> = {};
    if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
    const spans = new Map<string, { begin: number; byteLength: number }>();
    let offset = 0;
    for (const tensor of tensors) {
      if (tensor.name in header) throw new SafetensorsError(`${path}: tensor "${tensor.name}" written twice`);
      const byteLength =
        tensor.shape.reduce((product, dim) => product * dim, 1) * SAFETENSORS_DTYPE_BYTES[tensor.dtype];
      header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] };
      spans.set(tensor.name, { begin: offset, byteLength });
      offset += byteLength;
    }
    let headerText = JSON.stringify(header);
    headerText += " ".repeat((8 - ((8 + Buffer.byteLength(headerText)) % 8)) % 8);
    const headerBytes = Buffer.from(headerText, "utf8");
    const lengthBytes = Buffer.alloc(8);
    lengthBytes.writeBigUInt64LE(BigInt(headerBytes.length));
    const dataStart = 8 + headerBytes.length;
    const slots = new Map<string, Slot>();
    for (const [name, { begin, byteLength }] of spans) {
      slots.set(name, { start: dataStart + begin, byteLength, written: 0 });
    }

    const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
    const handle = await open(temporary, "wx");
    try {
      await handle.write(Buffer.concat([lengthBytes, headerBytes]), 0, dataStart, 0);
    } catch (error) {
      await handle.close().catch(() => undefined);
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    return new SafetensorsStreamWriter(path, temporary, handle, slots);
  }

  /** Append the next `bytes` of tensor `name` (each tensor is written front to back). */
  async append(name: string, bytes: Uint8Array): Promise<void> {
    const slot = this.slots.get(name);
    if (!slot) throw new SafetensorsError(`${this.path}: no tensor "${name}" in this file's header`);
    if (slot.written + bytes.byteLength > slot.byteLength) {
      throw new SafetensorsError(
        `${this.path}: tensor "${name}": ${slot.written + bytes.byteLength} bytes written, its header says ${slot.byteLength}`,
      );
    }
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await this.handle.write(
        bytes,
        done,
        bytes.byteLength - done,
        slot.start + slot.written + done,
      );
      done += bytesWritten;
    }
    slot.written += bytes.byteLength;
  }

  /** Check every tensor is complete, then make the file durable and visible under its name. */
  async commit(): Promise<void> {
    try {
      for (const [name, slot] of this.slots) {
        if (slot.written !== slot.byteLength) {
          throw new SafetensorsError(
            `${this.path}: tensor "${name}": ${slot.written} of ${slot.byteLength} bytes written`,
          );
        }
      }
      await this.handle.sync();
      await this.handle.close();
      await rename(this.temporary, this.path);
    } catch (error) {
      await this.abort();
      throw error;
    }
    const directory = await open(dirname(this.path), "r");
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }

  /** Give up: the temporary file goes, the target is untouched. */
  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await unlink(this.temporary).catch(() => undefined);
  }
}
