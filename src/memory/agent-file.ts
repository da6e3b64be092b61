/**
 * The on-disk format of one agent's KV memory, and the checks a file must pass before a byte of it
 * is trusted. AgentStore (persistence.ts) decides where files live and what happens to bad ones.
 *
 * One safetensors file per agent (version 1):
 *   tensors   `tokens`  U32 [tokenCount]        the token ids whose K/V the blocks hold
 *             `block.<i>` U8 [bytesPerBlock]     KvCache.exportBlock bytes, i = 0 … blockCount−1,
 *                                               laid out in that order after `tokens`
 *   metadata  format, format_version            checked first: a newer version is never misread
 *             model_id (informational), weights_fingerprint, tokenizer_fingerprint, backend,
 *             layers, kv_heads, head_dim, block_size, storage, bytes_per_block   (the CacheIdentity)
 *             tenant, agent_id, updated_at, token_count, block_count,
 *             block_hashes (JSON array, one per FULL block), block_crc32 and tokens_crc32 (CRC-32 of
 *             the data, so bit rot is caught on load), metadata_crc32 (CRC-32 of every other
 *             metadata entry, so a flipped digit in a block hash cannot pass as valid).
 */
import { crc32 } from "node:zlib";
import type { FileHandle } from "node:fs/promises";
import type { KvStorage } from "../../backends/contract.js";
import type { TensorEntry } from "../model/safetensors.js";
import type { AgentRecord, CacheIdentity } from "./persistence.js";
import { EndOfFileError, ReadPool, type ReadRun } from "./read-pool.js";

export const CACHE_FORMAT_VERSION = 1;
const FORMAT_NAME = "agent-memory.agent-kv";

/** Why a file cannot be used; `kind` is what the quarantine log line leads with. */
export class AgentFileRejected extends Error {
  override name = "AgentFileRejected";
  constructor(
    readonly kind: "corrupt" | "truncated" | "foreign" | "newer format" | "misplaced",
    message: string,
  ) {
    super(message);
  }
}

/** What a header promises about the data; checked against the data by readAgentData. */
export interface AgentFileHeader {
  tenant: string;
  agentId: string;
  updatedAt: number;
  tokenCount: number;
  blockHashes: string[];
  tokens: TensorEntry;
  blocks: TensorEntry[];
  tokensCrc: number;
  blockCrcs: number[];
  /** Where the data section must end: the file has no bytes after it. */
  dataEnd: number;
}

export function storageLabel(storage: KvStorage): string {
  return storage.kind === "float" ? storage.dtype : `q${storage.bits}g${storage.groupSize}`;
}

export function blockCountFor(tokenCount: number, blockSize: number): number {
  return Math.ceil(tokenCount / blockSize);
}

/** The metadata map written for a record; `blockCrcs` come from the caller so they can be computed without stalling. */
export function encodeMetadata(
  identity: CacheIdentity,
  record: AgentRecord,
  tokensCrc: number,
  blockCrcs: readonly number[],
): Record<string, string> {
  const metadata: Record<string, string> = {
    format: FORMAT_NAME,
    format_version: String(CACHE_FORMAT_VERSION),
    model_id: identity.modelId,
    weights_fingerprint: identity.weightsFingerprint,
    tokenizer_fingerprint: identity.tokenizerFingerprint,
    backend: identity.backend,
    layers: String(identity.layers),
    kv_heads: String(identity.kvHeads),
    head_dim: String(identity.headDim),
    block_size: String(identity.blockSize),
    storage: storageLabel(identity.storage),
    bytes_per_block: String(identity.bytesPerBlock),
    tenant: record.tenant,
    agent_id: record.agentId,
    updated_at: String(record.updatedAt),
    token_count: String(record.tokens.length),
    block_count: String(record.blocks.length),
    block_hashes: JSON.stringify(record.blockHashes),
    tokens_crc32: String(tokensCrc),
    block_crc32: JSON.stringify(blockCrcs),
  };
  metadata.metadata_crc32 = String(metadataCrc(metadata));
  return metadata;
}

/** CRC-32 of every entry but metadata_crc32 itself, in key order, unambiguously encoded. */
function metadataCrc(metadata: Readonly<Record<string, string>>): number {
  const entries = Object.keys(metadata)
    .filter((key) => key !== "metadata_crc32")
    .sort()
    .map((key) => [key, metadata[key]]);
  return crc32(JSON.stringify(entries));
}

/**
 * Checks a header against the identity the store expects, in an order that makes the reason useful:
 * what the file is, its version, its integrity, whose model it is, then its shape.
 */
export function checkHeader(
  metadata: Readonly<Record<string, string>>,
  tensors: ReadonlyMap<string, TensorEntry>,
  identity: CacheIdentity,
): AgentFileHeader {
  const corrupt = (message: string) => new AgentFileRejected("corrupt", message);
  if (metadata.format !== FORMAT_NAME) {
    throw new AgentFileRejected("foreign", `not an agent-memory KV file (format ${JSON.stringify(metadata.format)})`);
  }
  const version = metadata.format_version ?? "";
  if (!/^[1-9]\d{0,8}$/.test(version)) throw corrupt(`format_version ${JSON.stringify(version)} is not a version`);
  if (Number(version) > CACHE_FORMAT_VERSION) {
    throw new AgentFileRejected(
      "newer format",
      `format version ${version} is newer than this server's ${CACHE_FORMAT_VERSION}`,
    );
  }
  if (Number(version) !== CACHE_FORMAT_VERSION) {
    throw new AgentFileRejected("foreign", `format version ${version} is no longer supported`);
  }
  if (metadata.metadata_crc32 !== String(metadataCrc(metadata))) throw corrupt("header checksum mismatch");

  const differs = (what: string, found: string | undefined, expected: string) =>
    found === expected
      ? undefined
      : `${what} ${JSON.stringify(found)} ≠ ${JSON.stringify(expected)} (file written for model ${JSON.stringify(metadata.model_id)})`;
  const mismatch =
    differs("weights fingerprint", metadata.weights_fingerprint, identity.weightsFingerprint) ??
    differs("tokenizer fingerprint", metadata.tokenizer_fingerprint, identity.tokenizerFingerprint) ??
    differs("backend", metadata.backend, identity.backend) ??
    differs("layers", metadata.layers, String(identity.layers)) ??
    differs("kv_heads", metadata.kv_heads, String(identity.kvHeads)) ??
    differs("head_dim", metadata.head_dim, String(identity.headDim)) ??
    differs("block_size", metadata.block_size, String(identity.blockSize)) ??
    differs("storage", metadata.storage, storageLabel(identity.storage)) ??
    differs("bytes_per_block", metadata.bytes_per_block, String(identity.bytesPerBlock));
  if (mismatch) throw new AgentFileRejected("foreign", mismatch);

  const { tenant, agent_id: agentId } = metadata;
  if (tenant === undefined || agentId === undefined) throw corrupt("tenant or agent_id missing");
  const updatedAt = Number(metadata.updated_at);
  if (!Number.isFinite(updatedAt)) throw corrupt(`updated_at ${JSON.stringify(metadata.updated_at)} is not a number`);
  const tokenCount = count(metadata.token_count, "token_count");
  const blockCount = count(metadata.block_count, "block_count");
  if (blockCount !== blockCountFor(tokenCount, identity.blockSize)) {
    throw corrupt(`${blockCount} blocks cannot hold ${tokenCount} tokens in blocks of ${identity.blockSize}`);
  }
  const blockHashes = jsonArray(metadata.block_hashes, "block_hashes", (item) => typeof item === "string");
  if (blockHashes.length !== Math.floor(tokenCount / identity.blockSize)) {
    throw corrupt(`${blockHashes.length} block hashes for ${Math.floor(tokenCount / identity.blockSize)} full blocks`);
  }
  const blockCrcs = jsonArray(metadata.block_crc32, "block_crc32", isCrc);
  if (blockCrcs.length !== blockCount) throw corrupt(`${blockCrcs.length} block checksums for ${blockCount} blocks`);
  const tokensCrc = Number(metadata.tokens_crc32);
  if (!isCrc(tokensCrc)) throw corrupt("tokens_crc32 is not a CRC-32");

  // The tensor table must be exactly what the writer lays out: tokens, then the blocks back to back.
  if (tensors.size !== 1 + blockCount) throw corrupt(`${tensors.size} tensors for 1 + ${blockCount} expected`);
  const tokens = tensor(tensors, "tokens", "U32", tokenCount * 4, undefined);
  const blocks: TensorEntry[] = [];
  let next = tokens.fileOffset + tokens.byteLength;
  for (let i = 0; i < blockCount; i++) {
    const block = tensor(tensors, `block.${i}`, "U8", identity.bytesPerBlock, next);
    blocks.push(block);
    next += block.byteLength;
  }
  return {
    tenant,
    agentId,
    updatedAt,
    tokenCount,
    blockHashes: blockHashes as string[],
    tokens,
    blocks,
    tokensCrc,
    blockCrcs: blockCrcs as number[],
    dataEnd: next,
  };
}

function count(text: string | undefined, what: string): number {
  if (text === undefined || !/^(0|[1-9]\d{0,14})$/.test(text)) {
    throw new AgentFileRejected("corrupt", `${what} ${JSON.stringify(text)} is not a count`);
  }
  return Number(text);
}

function isCrc(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function jsonArray(text: string | undefined, what: string, valid: (item: unknown) => boolean): unknown[] {
  let value: unknown;
  try {
    value = JSON.parse(text ?? "");
  } catch {
    throw new AgentFileRejected("corrupt", `${what} is not JSON`);
  }
  if (!Array.isArray(value) || !value.every(valid)) {
    throw new AgentFileRejected("corrupt", `${what} is not a list of the right kind`);
  }
  return value;
}

function tensor(
  tensors: ReadonlyMap<string, TensorEntry>,
  name: string,
  dtype: "U32" | "U8",
  byteLength: number,
  fileOffset: number | undefined,
): TensorEntry {
  const entry = tensors.get(name);
  if (!entry) throw new AgentFileRejected("corrupt", `tensor ${name} is missing`);
  if (entry.dtype !== dtype || entry.shape.length !== 1 || entry.byteLength !== byteLength) {
    throw new AgentFileRejected(
      "corrupt",
      `tensor ${name} is ${entry.dtype} ${JSON.stringify(entry.shape)}, expected ${dtype} of ${byteLength} bytes`,
    );
  }
  if (fileOffset !== undefined && entry.fileOffset !== fileOffset) {
    throw new AgentFileRejected("corrupt", `tensor ${name} is not where the writer puts it`);
  }
  return entry;
}

/**
 * Blocks are read this many bytes at a time (at most), each chunk read and checksummed by one thread
 * of the ReadPool; with reused buffers, every new buffer is this size, so that one kept from a
 * smaller reload serves the chunks of a larger one.
 */
export const READ_CHUNK_BYTES = 8 * 1024 * 1024;
/** The first chunk of a read, at most (whole blocks, at least one). */
const FIRST_CHUNK_BYTES = 1024 * 1024;

/** Checks the file's size (as opened) against the header, then reads and verifies the tokens. */
export async function readAgentTokens(handle: FileHandle, header: AgentFileHeader, size: number): Promise<Uint32Array> {
  if (size < header.dataEnd) {
    throw new AgentFileRejected("truncated", `file is ${size} bytes, its header promises ${header.dataEnd}`);
  }
  if (size > header.dataEnd) throw new AgentFileRejected("corrupt", `${size - header.dataEnd} bytes after the data`);
  const tokenBytes = uninitialized(header.tokens.byteLength);
  await readFully(handle, tokenBytes, header.tokens.fileOffset);
  if (crc32(tokenBytes) !== header.tokensCrc) throw new AgentFileRejected("corrupt", "tokens fail their checksum");
  return new Uint32Array(tokenBytes.buffer, tokenBytes.byteOffset, header.tokenCount);
}

/**
 * Reads the blocks in chunks of whole blocks (one read per chunk, several in flight on libuv's pool)
 * and hands each chunk to `accept` — blocks first … first + bytes.byteLength / bytesPerBlock − 1,
 * back to back — only once every block in it has passed its checksum. A block that fails throws
 * AgentFileRejected before any later chunk is handed on; what was accepted before it is the
 * caller's to discard.
 *
 * The threads of `pool` read and checksum several chunks at once.
 * `buffers`: "reused" cycles through a few chunk buffers, so `bytes` is valid only until `accept`
 * returns or its promise resolves (no allocation per chunk, however big the file: the streaming
 * reload); "owned" gives every chunk a buffer of its own, which `accept` may keep.
 */
export async function readAgentBlocks(
  handle: FileHandle,
  header: AgentFileHeader,
  buffers: "reused" | "owned",
  accept: (first: number, bytes: Uint8Array) => void | Promise<void>,
  pool: ReadPool = ReadPool.shared(),
): Promise<void> {
  const count = header.blocks.length;
  if (count === 0) return;
  // Blocks are back to back (checkHeader made sure), so a chunk is a run of whole blocks.
  const blockBytes = header.blocks[0]!.byteLength;
  // At most 8 MiB, and small enough that a small file still gives every thread two chunks: a 36 MB
  // agent read in 8 MiB chunks kept 4 threads busy for one round and a half.
  const perThreadShare = Math.ceil(count / (2 * pool.size));
  const perChunk = Math.max(1, Math.min(perThreadShare, Math.floor(READ_CHUNK_BYTES / blockBytes)));
  // The first chunk is small: the caller's work on the blocks (an upload) waits for it, while the
  // reads of the others overlap that work. A 36 MB agent read in 4.5 MB chunks on an H200 host
  // handed its first blocks over 2.4 ms after the header, of an 11 ms reload.
  const firstChunk = Math.max(1, Math.min(perChunk, Math.floor(FIRST_CHUNK_BYTES / blockBytes)));
  const starts = [0];
  for (let start = firstChunk; start < count; start += perChunk) starts.push(start);
  const chunks = starts.length;
  // Two chunks per reader thread keep every thread busy.
  const readsInFlight = 2 * pool.size;
  const read = async (chunk: number): Promise<ReadRun> => {
    const first = starts[chunk]!;
    const byteLength = ((starts[chunk + 1] ?? count) - first) * blockBytes;
    const capacity = buffers === "reused" ? Math.max(byteLength, READ_CHUNK_BYTES) : byteLength;
    try {
      return await pool.read(handle.fd, byteLength, header.blocks[first]!.fileOffset, blockBytes, capacity);
    } catch (error) {
      if (error instanceof EndOfFileError) throw new AgentFileRejected("truncated", error.message);
      throw error;
    }
  };

  const inFlight: Promise<ReadRun>[] = [];
  let issued = 0;
  const issue = () => {
    while (issued < chunks && inFlight.length < readsInFlight) {
      const reading = read(issued++);
      reading.catch(() => undefined); // awaited in order below; this only keeps an early failure from being "unhandled"
      inFlight.push(reading);
    }
  };
  try {
    issue();
    for (let chunk = 0; chunk < chunks; chunk++) {
      const { crcs, bytes } = await inFlight.shift()!;
      issue();
      const first = starts[chunk]!;
      crcs.forEach((crc, i) => {
        if (crc !== header.blockCrcs[first + i]) {
          throw new AgentFileRejected("corrupt", `block ${first + i} fails its checksum`);
        }
      });
      await accept(first, bytes);
      // Reused: the buffer goes back to the readers (owned: it is the caller's now).
      if (buffers === "reused") pool.recycle(bytes);
    }
  } finally {
    // No read may still be running when the caller closes the handle or drops the buffers.
    await Promise.allSettled(inFlight);
  }
}

/**
 * Reads and verifies the tokens and every block. Blocks come back as views into one buffer per
 * chunk (a few MiB): one allocation and one read per chunk, however small the blocks.
 */
export async function readAgentData(
  handle: FileHandle,
  header: AgentFileHeader,
  size: number,
): Promise<{ tokens: Uint32Array; blocks: Uint8Array[] }> {
  const tokens = await readAgentTokens(handle, header, size);
  const blocks: Uint8Array[] = [];
  const blockBytes = header.blocks[0]?.byteLength ?? 0;
  await readAgentBlocks(handle, header, "owned", (first, bytes) => {
    for (let i = 0; i * blockBytes < bytes.byteLength; i++) {
      blocks[first + i] = bytes.subarray(i * blockBytes, (i + 1) * blockBytes);
    }
  });
  return { tokens, blocks };
}

/** A Uint8Array over an ArrayBuffer of its own, without the cost of zero-filling it first. */
function uninitialized(byteLength: number): Uint8Array {
  const buffer = Buffer.allocUnsafeSlow(byteLength);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** Reads until the buffer is full; a file that ends first is truncated. */
async function readFully(handle: FileHandle, buffer: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < buffer.byteLength;) {
    const { bytesRead } = await handle.read(buffer, done, buffer.byteLength - done, position + done);
    if (bytesRead === 0) throw new AgentFileRejected("truncated", `file ends at byte ${position + done}`);
    done += bytesRead;
  }
}
