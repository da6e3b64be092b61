/**
 * The warm tier: each agent's KV memory as one file in the cache directory (format: agent-file.ts),
 * so an evicted agent or a restarted server reloads instead of recomputing.
 *
 * What holds, whatever happens:
 * - Saves are atomic (writeSafetensors: temp file, fsync, rename, fsync dir): a crash, kill -9
 *   included, leaves the previous version loadable; the temp file it leaves is removed by scan().
 * - Loads never return wrong data and never throw over a file's contents: a corrupt, truncated,
 *   foreign (other weights, tokenizer, backend, geometry or KV storage) or newer-format file is moved
 *   to <dir>/quarantine/ with one WARNING line naming it and the reason, and is a miss (null). An I/O
 *   error other than "absent" is logged and is a miss too, the file left where it is.
 * - File names are `agent-<sha256(tenant, agent id)>.safetensors`: no id can name a path, so nothing
 *   is ever written outside the directory. Ids (tenant and agent) are still validated, and rejected
 *   with InvalidAgentIdError — which the protocols turn into a 400 — when they are empty, longer than
 *   512 characters (code points), contain a control character (Unicode Cc: U+0000–U+001F,
 *   U+007F–U+009F) or are not well-formed Unicode (a lone surrogate, which would hash like U+FFFD).
 *   Anything else — slashes, dots, spaces, any script, emoji — is an ordinary id.
 * - Operations on one agent run one at a time, in call order (a later save always wins; a load never
 *   sees a file half-replaced or quarantines a file a save just put there). One server per directory.
 * - Big files do not block the event loop: I/O is async, checksums run in slices of ~2 ms between awaits.
 */
import { createHash } from "node:crypto";
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { endianness } from "node:os";
import { basename, join } from "node:path";
import { crc32 } from "node:zlib";
import type { KvStorage } from "../../backends/contract.js";
import type { Logger } from "../logging.js";
import { SafetensorsError, SafetensorsFile, writeSafetensors, type TensorToWrite } from "../model/safetensors.js";
import {
  AgentFileRejected,
  blockCountFor,
  checkHeader,
  encodeMetadata,
  readAgentBlocks,
  readAgentData,
  readAgentTokens,
  type AgentFileHeader,
} from "./agent-file.js";

export { CACHE_FORMAT_VERSION } from "./agent-file.js";
export { fingerprintModel } from "./fingerprint.js";

/** What a cache file must match to be used: anything else is foreign. */
export interface CacheIdentity {
  /** Informational (logged), NOT compared: the fingerprint decides. */
  modelId: string;
  /** See fingerprintModel. */
  weightsFingerprint: string;
  tokenizerFingerprint: string;
  /** exportBlock bytes are in the backend's own storage format. */
  backend: string;
  layers: number;
  kvHeads: number;
  headDim: number;
  blockSize: number;
  storage: KvStorage;
  bytesPerBlock: number;
}

export interface AgentRecord {
  /** Who may reuse it (an API-key fingerprint or "anonymous"). */
  tenant: string;
  /** Any string the client sent that passes validateAgentId. */
  agentId: string;
  /** Token ids whose K/V the blocks hold, in order. */
  tokens: Uint32Array;
  /** Content hash of each FULL block's prefix: floor(tokens.length / blockSize) of them. */
  blockHashes: string[];
  /** exportBlock bytes, ceil(tokens.length / blockSize) of them, each bytesPerBlock long. */
  blocks: Uint8Array[];
  /** ms since epoch. */
  updatedAt: number;
}

/** An agent's file as far as it is known before its blocks are read: header and tokens, verified. */
export interface AgentPreamble {
  tenant: string;
  agentId: string;
  tokens: Uint32Array;
  blockHashes: string[];
  blockCount: number;
  updatedAt: number;
}

/** Where AgentStore.loadInto puts an agent's blocks as they are read and verified. */
export interface AgentBlockSink {
  /**
   * Called once, when the header and tokens have passed their checks and before any block is read;
   * false declines the load (e.g. no room now): loadInto returns "declined" and the file stays.
   */
  begin(preamble: AgentPreamble): boolean | Promise<boolean>;
  /**
   * Blocks first … first + n − 1, back to back in `bytes` (n · bytesPerBlock bytes), each already
   * verified. `bytes` is reused once this returns (or its promise resolves; later chunks wait for
   * it). A later block can still fail (loadInto then returns "miss"): nothing taken here may be used
   * before loadInto returns "loaded".
   */
  blocks(first: number, bytes: Uint8Array): void | Promise<void>;
}

export interface WarmEntry {
  tenant: string;
  agentId: string;
  path: string;
  tokenCount: number;
  bytes: number;
  updatedAt: number;
}

/** An id the store will not take; the message says why and is safe to show the client. */
export class InvalidAgentIdError extends Error {
  override name = "InvalidAgentIdError";
}

export const MAX_AGENT_ID_LENGTH = 512;

/** Throws InvalidAgentIdError for an id the store rejects (see the file header); `what` names it in the message. */
export function validateAgentId(id: string, what = "agent id"): void {
  if (typeof id !== "string") throw new InvalidAgentIdError(`${what} must be a string`);
  if (id.length === 0) throw new InvalidAgentIdError(`${what} must not be empty`);
  if (id.length > 2 * MAX_AGENT_ID_LENGTH || [...id].length > MAX_AGENT_ID_LENGTH) {
    throw new InvalidAgentIdError(`${what} is longer than ${MAX_AGENT_ID_LENGTH} characters`);
  }
  if (/\p{Cc}/u.test(id)) throw new InvalidAgentIdError(`${what} contains a control character`);
  if (/\p{Cs}/u.test(id)) throw new InvalidAgentIdError(`${what} is not well-formed Unicode (lone surrogate)`);
}

const AGENT_FILE = /^agent-[0-9a-f]{64}\.safetensors$/;
/** writeSafetensors' temporary name for a target: `.<target>.<random hex>.tmp`. */
const TEMP_FILE = /^\.(agent-[0-9a-f]{64}\.safetensors)\.[0-9a-f]+\.tmp$/;
const QUARANTINE = "quarantine";
/** Checksumming slices between yields to the event loop: ~2 ms of CRC-32 each. */
const CHECKSUM_SLICE_BYTES = 8 * 1024 * 1024;
const SCAN_CONCURRENCY = 16;

export class AgentStore {
  private readonly queues = new Map<string, Promise<void>>();
  private directoryReady: Promise<void> | undefined;

  constructor(
    readonly directory: string,
    readonly identity: CacheIdentity,
    private readonly logger: Logger,
  ) {
    if (endianness() !== "LE") throw new Error("AgentStore: safetensors data is little-endian; this host is not");
    for (const key of ["layers", "kvHeads", "headDim", "blockSize", "bytesPerBlock"] as const) {
      if (!Number.isSafeInteger(identity[key]) || identity[key] <= 0) {
        throw new Error(`AgentStore: identity.${key} must be a positive integer, got ${identity[key]}`);
      }
    }
  }

  /** File name for an agent: a hash of (tenant, agentId), so no id can name a path outside the directory. */
  static fileName(tenant: string, agentId: string): string {
    validateAgentId(tenant, "tenant");
    validateAgentId(agentId);
    const digest = createHash("sha256").update(JSON.stringify(["agent-memory agent", tenant, agentId]));
    return `agent-${digest.digest("hex")}.safetensors`;
  }

  /**
   * Atomic: a crash (even kill -9) mid-save leaves the previous version loadable. The record's arrays
   * must not change until the promise settles. A record that contradicts itself or the identity throws.
   */
  async save(record: AgentRecord): Promise<{ path: string; bytes: number }> {
    const name = AgentStore.fileName(record.tenant, record.agentId);
    this.checkRecord(record);
    return this.exclusive(name, async () => {
      await this.ensureDirectory();
      const tokenBytes = new Uint8Array(record.tokens.buffer, record.tokens.byteOffset, record.tokens.byteLength);
      const blockCrcs = await checksums(record.blocks);
      const tensors: TensorToWrite[] = [
        { name: "tokens", dtype: "U32", shape: [record.tokens.length], data: tokenBytes },
        ...record.blocks.map((data, i) => ({ name: `block.${i}`, dtype: "U8" as const, shape: [data.length], data })),
      ];
      const path = join(this.directory, name);
      await writeSafetensors(path, tensors, encodeMetadata(this.identity, record, crc32(tokenBytes), blockCrcs));
      return { path, bytes: (await stat(path)).size };
    });
  }

  /**
   * null when absent; a corrupt, truncated, foreign or newer-format file is quarantined with one
   * WARNING line and is a miss (null) — never a throw, never wrong data. Throws only InvalidAgentIdError.
   * The blocks it returns are views into a few shared buffers of some MiB each (mind their byteOffset).
   */
  async load(tenant: string, agentId: string): Promise<AgentRecord | null> {
    const name = AgentStore.fileName(tenant, agentId);
    return this.exclusive(name, async () => {
      const inspected = await this.inspect(name);
      if (!inspected) return null;
      const { path, header, file } = inspected;
      try {
        const { tokens, blocks } = await readAgentData(file.handle, header, file.size);
        return { tenant, agentId, tokens, blockHashes: header.blockHashes, blocks, updatedAt: header.updatedAt };
      } catch (error) {
        return await this.unusable(path, error);
      } finally {
        await file.close();
      }
    });
  }

  /**
   * The streaming load (AgentMemory's reload): like `load`, but blocks go to `sink` chunk by chunk
   * as they are read and verified, through a few reused buffers, instead of being gathered in memory.
   * "loaded": every block reached the sink and passed; "miss": absent or unusable (quarantined or
   * logged as `load` does) — whatever the sink took is to be discarded; "declined": the sink's
   * `begin` said no, the file is left as it is. Throws only InvalidAgentIdError, or what the sink throws.
   */
  async loadInto(tenant: string, agentId: string, sink: AgentBlockSink): Promise<"loaded" | "miss" | "declined"> {
    const name = AgentStore.fileName(tenant, agentId);
    return this.exclusive(name, async () => {
      const inspected = await this.inspect(name);
      if (!inspected) return "miss";
      const { path, header, file } = inspected;
      const { handle } = file;
      try {
        const tokens = await readAgentTokens(handle, header, file.size);
        const { blockHashes, updatedAt } = header;
        const preamble = { tenant, agentId, tokens, blockHashes, blockCount: header.blocks.length, updatedAt };
        if (!(await sinkCall(() => sink.begin(preamble)))) return "declined";
        await readAgentBlocks(handle, header, "reused", (first, bytes) => sinkCall(() => sink.blocks(first, bytes)));
        return "loaded";
      } catch (error) {
        // The sink's own failures are not the file's fault: no quarantine for them.
        if (error instanceof SinkFailure) throw error.cause;
        await this.unusable(path, error);
        return "miss";
      } finally {
        await file.close();
      }
    });
  }

  /**
   * Rebuilds the warm index at start, oldest first: reads headers only, quarantines files whose header
   * is bad (a bad data section is caught by load), removes temp files a crashed save left behind,
   * and leaves files that are not the store's alone.
   */
  async scan(): Promise<WarmEntry[]> {
    await this.ensureDirectory();
    const names = (await readdir(this.directory)).sort();
    const entries: WarmEntry[] = [];
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const name = names[next++]!;
        const temp = TEMP_FILE.exec(name);
        if (temp) {
          // Under the target's lock, no save of ours is writing it: it is a crash's leftover.
          await this.exclusive(temp[1]!, () => this.removeStaleTemp(name));
        } else if (AGENT_FILE.test(name)) {
          const entry = await this.exclusive(name, () => this.entryFor(name));
          if (entry) entries.push(entry);
        }
      }
    };
    await Promise.all(Array.from({ length: SCAN_CONCURRENCY }, worker));
    return entries.sort((a, b) => a.updatedAt - b.updatedAt || (a.path < b.path ? -1 : 1));
  }

  /** Removes the agent's file; false when there was none. */
  async delete(tenant: string, agentId: string): Promise<boolean> {
    const name = AgentStore.fileName(tenant, agentId);
    return this.exclusive(name, async () => {
      try {
        await unlink(join(this.directory, name));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
        throw error;
      }
      // Durable, so a crash cannot bring back an agent the user deleted.
      await syncDirectory(this.directory);
      return true;
    });
  }

  private checkRecord(record: AgentRecord): void {
    const { blockSize, bytesPerBlock } = this.identity;
    const fail = (message: string) => new Error(`AgentStore.save(${JSON.stringify(record.agentId)}): ${message}`);
    if (!(record.tokens instanceof Uint32Array)) throw fail("tokens must be a Uint32Array");
    const blocks = blockCountFor(record.tokens.length, blockSize);
    if (record.blocks.length !== blocks) {
      throw fail(`${record.blocks.length} blocks for ${record.tokens.length} tokens (needs ${blocks})`);
    }
    record.blocks.forEach((block, i) => {
      if (!(block instanceof Uint8Array) || block.byteLength !== bytesPerBlock) {
        throw fail(`block ${i} is not a Uint8Array of ${bytesPerBlock} bytes`);
      }
    });
    const fullBlocks = Math.floor(record.tokens.length / blockSize);
    if (record.blockHashes.length !== fullBlocks || !record.blockHashes.every((hash) => typeof hash === "string")) {
      throw fail(`${record.blockHashes.length} block hashes for ${fullBlocks} full blocks`);
    }
    if (!Number.isFinite(record.updatedAt)) throw fail(`updatedAt ${record.updatedAt} is not a time`);
  }

  /**
   * Opens and checks a file's header; null (after quarantining or logging) when it cannot be used.
   * The file must belong to the agent its name is derived from, so a load gets only its own agent.
   * The file is left open for the rest of the load (one open per load: every file operation is a
   * round trip through libuv's thread pool); the caller closes it.
   */
  private async inspect(
    name: string,
  ): Promise<{ path: string; header: AgentFileHeader; file: SafetensorsFile } | null> {
    const path = join(this.directory, name);
    let file: SafetensorsFile;
    try {
      file = await SafetensorsFile.open(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      return this.unusable(path, error);
    }
    try {
      const header = checkHeader(file.metadata, file.tensors, this.identity);
      let owner: string;
      try {
        owner = AgentStore.fileName(header.tenant, header.agentId);
      } catch {
        throw new AgentFileRejected("corrupt", "the tenant or agent id in the header is not a valid id");
      }
      if (owner !== name) throw new AgentFileRejected("misplaced", "the file holds another agent's memory");
      if (file.size < header.dataEnd) {
        throw new AgentFileRejected("truncated", `file is ${file.size} bytes, its header promises ${header.dataEnd}`);
      }
      return { path, header, file };
    } catch (error) {
      await file.close();
      return await this.unusable(path, error);
    }
  }

  private async entryFor(name: string): Promise<WarmEntry | null> {
    const inspected = await this.inspect(name);
    if (!inspected) return null;
    const { path, header, file } = inspected;
    await file.close();
    const size = file.size;
    return {
      tenant: header.tenant,
      agentId: header.agentId,
      path,
      tokenCount: header.tokenCount,
      bytes: size,
      updatedAt: header.updatedAt,
    };
  }

  /** A file that failed: bad contents go to quarantine, other I/O errors are logged; either way a miss. */
  private async unusable(path: string, error: unknown): Promise<null> {
    if (error instanceof AgentFileRejected) {
      await this.quarantine(path, `${error.kind}: ${error.message}`);
    } else if (error instanceof SafetensorsError) {
      // Its message starts with the path, which the log line already names.
      await this.quarantine(path, `corrupt: ${error.message.replace(`${path}: `, "")}`);
    } else if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
      this.logger.warning(`agent file ${path} could not be read (${(error as Error).message}); treated as a miss`);
    }
    return null;
  }

  private async quarantine(path: string, reason: string): Promise<void> {
    const stamp = new Date().toISOString().replace(/[-:.]/g, "");
    const target = join(this.directory, QUARANTINE, `${basename(path)}.${stamp}.${process.pid}`);
    try {
      await mkdir(join(this.directory, QUARANTINE), { recursive: true });
      await rename(path, target);
      this.logger.warning(`agent file ${path} quarantined to ${target} (${reason}); treated as a miss`);
    } catch (error) {
      this.logger.warning(
        `agent file ${path} is unusable (${reason}) and could not be quarantined (${(error as Error).message}); treated as a miss`,
      );
    }
  }

  private async removeStaleTemp(name: string): Promise<void> {
    try {
      await unlink(join(this.directory, name));
      this.logger.info(`removed ${join(this.directory, name)}, left by a save that did not finish`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        this.logger.warning(`could not remove stale temp file ${name}: ${(error as Error).message}`);
      }
    }
  }

  private ensureDirectory(): Promise<void> {
    this.directoryReady ??= mkdir(this.directory, { recursive: true }).then(
      () => undefined,
      (error: unknown) => {
        this.directoryReady = undefined;
        throw error;
      },
    );
    return this.directoryReady;
  }

  /** Runs task after every earlier task for the same key has settled. */
  private exclusive<T>(key: string, task: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(key) ?? Promise.resolve()).then(task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return run;
  }
}

/** An error thrown by an AgentBlockSink, carried past the file's error handling unchanged. */
class SinkFailure extends Error {
  constructor(override readonly cause: unknown) {
    super("agent block sink failed");
  }
}

function sinkCall<T>(call: () => T): T {
  try {
    const result = call();
    return result instanceof Promise
      ? (result.catch((error: unknown) => Promise.reject(new SinkFailure(error))) as T)
      : result;
  } catch (error) {
    throw new SinkFailure(error);
  }
}

/** CRC-32 of each block, yielding to the event loop between slices so a multi-GB save never stalls it. */
async function checksums(blocks: readonly Uint8Array[]): Promise<number[]> {
  const crcs: number[] = [];
  let sinceYield = 0;
  for (const block of blocks) {
    crcs.push(crc32(block));
    sinceYield += block.byteLength;
    if (sinceYield >= CHECKSUM_SLICE_BYTES) {
      sinceYield = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return crcs;
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
