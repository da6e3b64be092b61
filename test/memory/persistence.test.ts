/**
 * The warm tier on disk: what a user relies on when an agent is evicted or the server restarts —
 * the memory comes back byte for byte, a crash mid-save loses nothing that was saved before, and a
 * file that cannot be trusted (bit rot, truncation, another model, a newer server) is set aside with
 * a log line and treated as a miss, never loaded. Ids from clients cannot reach outside the directory.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/logging.js";
import { SafetensorsFile, writeSafetensors } from "../../src/model/safetensors.js";
import {
  AgentStore,
  CACHE_FORMAT_VERSION,
  fingerprintModel,
  InvalidAgentIdError,
  type AgentRecord,
  type CacheIdentity,
} from "../../src/memory/persistence.js";
import { REPO_ROOT, scratchDir } from "../support/cli.js";

const IDENTITY: CacheIdentity = {
  modelId: "test/tiny-llama",
  weightsFingerprint: "a".repeat(64),
  tokenizerFingerprint: "b".repeat(64),
  backend: "webgpu",
  layers: 2,
  kvHeads: 2,
  headDim: 8,
  blockSize: 4,
  storage: { kind: "float", dtype: "f16" },
  bytesPerBlock: 2 * 2 * 8 * 4 * 2 * 2, // layers · heads · dim · tokens · (K, V) · f16
};

function record(tenant: string, agentId: string, tokenCount: number, identity = IDENTITY): AgentRecord {
  const { blockSize, bytesPerBlock } = identity;
  return {
    tenant,
    agentId,
    tokens: Uint32Array.from({ length: tokenCount }, () => randomBytes(4).readUInt32LE()),
    blockHashes: Array.from({ length: Math.floor(tokenCount / blockSize) }, () => randomBytes(32).toString("hex")),
    blocks: Array.from({ length: Math.ceil(tokenCount / blockSize) }, () => new Uint8Array(randomBytes(bytesPerBlock))),
    updatedAt: Date.now() - Math.floor(Math.random() * 1e6),
  };
}

function storeIn(directory: string, identity = IDENTITY) {
  const lines: string[] = [];
  const store = new AgentStore(
    directory,
    identity,
    createLogger("DEBUG", (line) => lines.push(line)),
  );
  return { store, lines, warnings: () => lines.filter((line) => line.includes(" WARNING ")) };
}

function expectSameRecord(actual: AgentRecord | null, expected: AgentRecord) {
  expect(actual).not.toBeNull();
  expect(actual!.tenant).toBe(expected.tenant);
  expect(actual!.agentId).toBe(expected.agentId);
  expect(Array.from(actual!.tokens)).toEqual(Array.from(expected.tokens));
  expect(actual!.blockHashes).toEqual(expected.blockHashes);
  expect(actual!.updatedAt).toBe(expected.updatedAt);
  expect(actual!.blocks.length).toBe(expected.blocks.length);
  actual!.blocks.forEach((block, i) => expect(Buffer.from(block).equals(Buffer.from(expected.blocks[i]!))).toBe(true));
}

/**
 * A process that saves one big agent through the compiled store (dist/, which global setup builds), for
 * a test to kill -9 in the middle of the save. argv: directory, identity JSON, tenant, agent id, block count.
 */
const SAVER = `
import { createLogger } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, "dist/src/logging.js")).href)};
import { AgentStore } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, "dist/src/memory/persistence.js")).href)};
const [directory, identityJson, tenant, agentId, blockCount] = process.argv.slice(-5);
const identity = JSON.parse(identityJson);
const store = new AgentStore(directory, identity, createLogger("WARNING"));
const tokens = new Uint32Array(Number(blockCount) * identity.blockSize).map((_, i) => i + 7);
const blocks = Array.from({ length: Number(blockCount) }, (_, i) => new Uint8Array(identity.bytesPerBlock).fill(i));
const blockHashes = blocks.map((_, i) => "child-" + i);
process.stdout.write("saving\\n");
await store.save({ tenant, agentId, tokens, blockHashes, blocks, updatedAt: Date.now() });
process.stdout.write("saved\\n");
`;

const quarantined = (directory: string) =>
  existsSync(join(directory, "quarantine")) ? readdirSync(join(directory, "quarantine")) : [];

/** Overwrites bytes of a file in place. */
function patch(path: string, offset: number, bytes: Uint8Array | string) {
  const file = readFileSync(path);
  Buffer.from(typeof bytes === "string" ? Buffer.from(bytes) : bytes).copy(file, offset);
  writeFileSync(path, file);
}

/** Replaces text inside the JSON header by text of the same length. */
function patchHeader(path: string, from: string, to: string) {
  expect(to.length).toBe(from.length);
  const file = readFileSync(path);
  const headerEnd = 8 + Number(file.readBigUInt64LE(0));
  const at = file.subarray(0, headerEnd).indexOf(from);
  expect(at).toBeGreaterThan(0);
  patch(path, at, to);
}

async function tensorOffset(path: string, name: string): Promise<number> {
  const file = await SafetensorsFile.open(path);
  try {
    return file.entry(name).fileOffset;
  } finally {
    await file.close();
  }
}

describe("AgentStore", () => {
  it("loads back exactly what it saved, partial last block included", async () => {
    const directory = scratchDir();
    const { store, warnings } = storeIn(directory);
    const agent = record("tenant-1", "agent-1", 4 * 5 + 3);
    const saved = await store.save(agent);
    expect(saved.path).toBe(join(directory, AgentStore.fileName("tenant-1", "agent-1")));
    expect(saved.bytes).toBe(statSync(saved.path).size);
    expect(saved.bytes).toBeGreaterThan(6 * IDENTITY.bytesPerBlock);
    expectSameRecord(await store.load("tenant-1", "agent-1"), agent);

    const empty = record("tenant-1", "empty", 0);
    await store.save(empty);
    expectSameRecord(await store.load("tenant-1", "empty"), empty);

    // Saving again replaces the file atomically and leaves nothing else behind.
    const longer = record("tenant-1", "agent-1", 4 * 9);
    await store.save(longer);
    expectSameRecord(await store.load("tenant-1", "agent-1"), longer);
    expect(readdirSync(directory).sort()).toEqual(
      [AgentStore.fileName("tenant-1", "agent-1"), AgentStore.fileName("tenant-1", "empty")].sort(),
    );
    expect(await store.load("tenant-1", "never-saved")).toBeNull();
    expect(warnings()).toEqual([]);
  });

  it("round-trips an agent read in several chunks, and re-saves what it loaded", async () => {
    const directory = scratchDir();
    // 2 blocks per 8 MiB read chunk, after a first chunk of one block (the first read is small).
    const big = { ...IDENTITY, bytesPerBlock: 3 * 1024 * 1024 + 4 };
    const { store, warnings } = storeIn(directory, big);
    const agent = record("t", "big", 4 * 6 + 1, big);
    await store.save(agent);
    const loaded = await store.load("t", "big");
    expectSameRecord(loaded, agent);
    // Loaded blocks are views into shared buffers; saving them again writes the same bytes.
    await store.save({ ...loaded!, agentId: "copy" });
    expectSameRecord(await store.load("t", "copy"), { ...agent, agentId: "copy" });

    const { path } = await store.save(agent);
    const offset = (await tensorOffset(path, "block.6")) + big.bytesPerBlock - 1;
    patch(path, offset, new Uint8Array([readFileSync(path)[offset]! ^ 0x80]));
    expect(await store.load("t", "big")).toBeNull();
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatch(/corrupt: block 6 fails its checksum/);
  });

  it("loadInto streams verified blocks in file order; a bad block later on is a miss, quarantined", async () => {
    const directory = scratchDir();
    // 2 blocks per 8 MiB read chunk, after a first chunk of one block (the first read is small).
    const big = { ...IDENTITY, bytesPerBlock: 3 * 1024 * 1024 + 4 };
    const { store, warnings } = storeIn(directory, big);
    const agent = record("t", "streamed", 4 * 12 + 3, big);
    const { path } = await store.save(agent);
    const received: { first: number; copy: Buffer }[] = [];
    const begun: unknown[] = [];
    const sink = {
      begin: (preamble: unknown) => (begun.push(preamble), true),
      // The bytes are reused once this returns: keep a copy.
      blocks: (first: number, bytes: Uint8Array) => void received.push({ first, copy: Buffer.from(bytes) }),
    };
    expect(await store.loadInto("t", "streamed", sink)).toBe("loaded");
    expect(begun).toEqual([
      {
        tenant: "t",
        agentId: "streamed",
        tokens: agent.tokens,
        blockHashes: agent.blockHashes,
        blockCount: 13,
        updatedAt: agent.updatedAt,
      },
    ]);
    expect(received.map(({ first }) => first)).toEqual([0, 1, 3, 5, 7, 9, 11]);
    expect(Buffer.concat(received.map(({ copy }) => copy)).equals(Buffer.concat(agent.blocks))).toBe(true);

    // Block 7 rots: the sink has had blocks 0–6 when the miss is reported, and never sees 7 or 8.
    const offset = (await tensorOffset(path, "block.7")) + 17;
    patch(path, offset, new Uint8Array([readFileSync(path)[offset]! ^ 0x01]));
    received.length = 0;
    expect(await store.loadInto("t", "streamed", sink)).toBe("miss");
    expect(received.map(({ first }) => first)).toEqual([0, 1, 3, 5]);
    expect(existsSync(path)).toBe(false);
    expect(quarantined(directory)).toHaveLength(1);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatch(/corrupt: block 7 fails its checksum/);
    expect(await store.loadInto("t", "streamed", sink)).toBe("miss");
    expect(warnings()).toHaveLength(1);
  });

  it("loadInto: a sink that declines or fails leaves the file alone", async () => {
    const directory = scratchDir();
    const { store, warnings } = storeIn(directory);
    const agent = record("t", "kept", 4 * 5 + 1);
    const { path } = await store.save(agent);
    const refuse = { begin: () => Promise.resolve(false), blocks: () => expect.fail("declined, yet given blocks") };
    expect(await store.loadInto("t", "kept", refuse)).toBe("declined");
    const failing = {
      begin: () => true,
      blocks: () => {
        throw new Error("device lost");
      },
    };
    await expect(store.loadInto("t", "kept", failing)).rejects.toThrow("device lost");
    expect(existsSync(path)).toBe(true);
    expect(warnings()).toEqual([]);
    expectSameRecord(await store.load("t", "kept"), agent);
  });

  it("writes the documented format: safetensors tensors and identity metadata", async () => {
    const { store } = storeIn(scratchDir());
    const { path } = await store.save(record("t", "format", 9));
    const file = await SafetensorsFile.open(path);
    try {
      expect([...file.tensors.keys()]).toEqual(["tokens", "block.0", "block.1", "block.2"]);
      expect(file.entry("tokens")).toMatchObject({ dtype: "U32", shape: [9] });
      expect(file.entry("block.2")).toMatchObject({ dtype: "U8", shape: [IDENTITY.bytesPerBlock] });
      expect(file.metadata).toMatchObject({
        format_version: String(CACHE_FORMAT_VERSION),
        model_id: "test/tiny-llama",
        weights_fingerprint: IDENTITY.weightsFingerprint,
        tokenizer_fingerprint: IDENTITY.tokenizerFingerprint,
        backend: "webgpu",
        layers: "2",
        kv_heads: "2",
        head_dim: "8",
        block_size: "4",
        storage: "f16",
        bytes_per_block: String(IDENTITY.bytesPerBlock),
        tenant: "t",
        agent_id: "format",
        token_count: "9",
      });
      expect(JSON.parse(file.metadata.block_crc32!)).toHaveLength(3);
    } finally {
      await file.close();
    }
  });

  it("after a restart, a new store scans and loads every agent", async () => {
    const directory = scratchDir();
    const before = storeIn(directory).store;
    // The same agent id under two tenants is two agents.
    const agents = [record("alice", "shared-id", 17), record("bob", "shared-id", 8), record("alice", "other", 1)];
    for (const agent of agents) await before.save(agent);

    const { store, warnings } = storeIn(directory);
    const entries = await store.scan();
    expect(entries.map((entry) => [entry.tenant, entry.agentId]).sort()).toEqual(
      agents.map((agent) => [agent.tenant, agent.agentId]).sort(),
    );
    expect(entries.map((entry) => entry.updatedAt)).toEqual(
      agents.map((agent) => agent.updatedAt).sort((a, b) => a - b),
    );
    for (const entry of entries) {
      const agent = agents.find(
        (candidate) => candidate.tenant === entry.tenant && candidate.agentId === entry.agentId,
      )!;
      expect(entry.tokenCount).toBe(agent.tokens.length);
      expect(entry.bytes).toBe(statSync(entry.path).size);
      expectSameRecord(await store.load(entry.tenant, entry.agentId), agent);
    }
    expect(await store.load("carol", "shared-id")).toBeNull();
    expect(warnings()).toEqual([]);
  });

  it("a kill -9 in the middle of a save leaves the previous version loadable, and scan removes the temp file", async () => {
    if (!existsSync(join(REPO_ROOT, "dist/src/memory/persistence.js"))) throw new Error("run `npm run build` first");
    const directory = scratchDir();
    const { store } = storeIn(directory);
    const previous = record("tenant", "victim", 4 * 3 + 1);
    await store.save(previous);

    // 96 blocks of 2 MiB: hundreds of milliseconds of writing, to be killed in the middle of.
    const big = { ...IDENTITY, bytesPerBlock: 2 * 1024 * 1024 };
    const saver = spawn(
      process.execPath,
      ["--input-type=module", "-e", SAVER, "--", directory, JSON.stringify(big), "tenant", "victim", "96"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let stdout = "";
    saver.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      saver.on("close", (_code, signal) => resolve(signal)),
    );
    let tempSize = 0;
    while (saver.exitCode === null && saver.signalCode === null) {
      const temp = readdirSync(directory).find((name) => name.endsWith(".tmp"));
      tempSize = temp ? statSync(join(directory, temp)).size : 0;
      if (tempSize > 4 * 1024 * 1024) {
        saver.kill("SIGKILL");
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(await exited).toBe("SIGKILL");
    expect(stdout).toBe("saving\n");
    const temps = readdirSync(directory).filter((name) => name.endsWith(".tmp"));
    expect(temps).toHaveLength(1);
    expect(statSync(join(directory, temps[0]!)).size).toBeLessThan(96 * big.bytesPerBlock);

    const { store: restarted, lines } = storeIn(directory);
    const entries = await restarted.scan();
    expect(entries.map((entry) => [entry.agentId, entry.tokenCount])).toEqual([["victim", 13]]);
    expect(readdirSync(directory)).toEqual([AgentStore.fileName("tenant", "victim")]);
    expect(lines.some((line) => line.includes(temps[0]!) && line.includes("did not finish"))).toBe(true);
    expectSameRecord(await restarted.load("tenant", "victim"), previous);
  });

  it("operations on one agent apply in call order: a later save wins, a load sees the version saved before it", async () => {
    const { store } = storeIn(scratchDir());
    const versions = [record("t", "busy", 40), record("t", "busy", 3), record("t", "busy", 21)];
    const first = store.save(versions[0]!);
    const between = store.load("t", "busy");
    const rest = [store.save(versions[1]!), store.save(versions[2]!)];
    await Promise.all([first, ...rest]);
    expectSameRecord(await between, versions[0]!);
    expectSameRecord(await store.load("t", "busy"), versions[2]!);
  });

  it("refuses a record that contradicts itself, writing nothing", async () => {
    const directory = scratchDir();
    const { store } = storeIn(directory);
    const good = record("t", "bad", 9);
    await expect(store.save({ ...good, blocks: good.blocks.slice(1) })).rejects.toThrow(/2 blocks for 9 tokens/);
    await expect(store.save({ ...good, blocks: [...good.blocks.slice(0, 2), new Uint8Array(3)] })).rejects.toThrow(
      /block 2 is not a Uint8Array of 512 bytes/,
    );
    await expect(store.save({ ...good, blockHashes: ["x"] })).rejects.toThrow(/1 block hashes for 2 full blocks/);
    expect(readdirSync(directory)).toEqual([]);
  });

  it("delete removes the agent's file and says whether there was one", async () => {
    const directory = scratchDir();
    const { store } = storeIn(directory);
    await store.save(record("t", "gone", 5));
    await store.save(record("t", "kept", 5));
    expect(await store.delete("t", "gone")).toBe(true);
    expect(await store.delete("t", "gone")).toBe(false);
    expect(await store.load("t", "gone")).toBeNull();
    expect((await store.scan()).map((entry) => entry.agentId)).toEqual(["kept"]);
  });
});

describe("AgentStore with files it must not trust", () => {
  /** Saves an agent, damages its file, and checks: load is a miss, the file is in quarantine, one WARNING says why. */
  async function expectQuarantined(damage: (path: string) => void | Promise<void>, reason: RegExp) {
    const directory = scratchDir();
    const { store, warnings } = storeIn(directory);
    const agent = record("t", "damaged", 4 * 6 + 2);
    const { path } = await store.save(agent);
    await damage(path);
    expect(await store.load("t", "damaged")).toBeNull();
    expect(existsSync(path)).toBe(false);
    expect(quarantined(directory)).toHaveLength(1);
    expect(quarantined(directory)[0]).toMatch(new RegExp(`^${AgentStore.fileName("t", "damaged")}\\.`));
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toContain(path);
    expect(warnings()[0]).toMatch(reason);
    // Afterwards it is simply absent, and a new save works.
    expect(await store.load("t", "damaged")).toBeNull();
    await store.save(agent);
    expectSameRecord(await store.load("t", "damaged"), agent);
    expect(warnings()).toHaveLength(1);
  }

  it("a flipped byte in a block's data fails its checksum", async () => {
    await expectQuarantined(async (path) => {
      const offset = (await tensorOffset(path, "block.3")) + 100;
      patch(path, offset, new Uint8Array([readFileSync(path)[offset]! ^ 0x10]));
    }, /corrupt: block 3 fails its checksum/);
  });

  it("a flipped bit in the token ids fails their checksum", async () => {
    await expectQuarantined(async (path) => {
      const offset = await tensorOffset(path, "tokens");
      patch(path, offset, new Uint8Array([readFileSync(path)[offset]! ^ 0x01]));
    }, /corrupt: tokens fail their checksum/);
  });

  it("a changed digit in a block hash in the header fails the header checksum", async () => {
    await expectQuarantined((path) => {
      const file = readFileSync(path);
      const hashes = JSON.parse(
        (
          JSON.parse(file.subarray(8, 8 + Number(file.readBigUInt64LE(0))).toString()) as {
            __metadata__: Record<string, string>;
          }
        ).__metadata__.block_hashes!,
      ) as string[];
      const hash = hashes[2]!;
      patchHeader(path, hash, (hash[0] === "0" ? "1" : "0") + hash.slice(1));
    }, /corrupt: header checksum mismatch/);
  });

  it("a truncated file", async () => {
    await expectQuarantined((path) => truncateSync(path, statSync(path).size - 300), /truncated/);
  });

  it("a file cut inside its header, or empty", async () => {
    await expectQuarantined((path) => truncateSync(path, 20), /corrupt: .*(truncated|not safetensors)/);
    await expectQuarantined((path) => truncateSync(path, 0), /corrupt: 0 bytes is too short/);
  });

  it("garbage in the header", async () => {
    await expectQuarantined((path) => patch(path, 8, "#garbage!#garbage!"), /corrupt: header is not valid JSON/);
    await expectQuarantined(
      (path) => patch(path, 0, new Uint8Array(8).fill(0xff)),
      /corrupt: header length \d+ does not fit/,
    );
  });

  it("bytes appended after the data", async () => {
    await expectQuarantined((path) => writeFileSync(path, "extra", { flag: "a" }), /corrupt: 5 bytes after the data/);
  });

  it("a newer format version is set aside, not misread", async () => {
    await expectQuarantined(
      (path) => patchHeader(path, `"format_version":"${CACHE_FORMAT_VERSION}"`, `"format_version":"9"`),
      /newer format: format version 9 is newer than this server's 1/,
    );
  });

  it("a safetensors file that is not an agent file", async () => {
    await expectQuarantined(
      (path) => writeSafetensors(path, [{ name: "w", dtype: "U8", shape: [2], data: new Uint8Array(2) }]),
      /foreign: not an agent-memory KV file/,
    );
  });

  it("another agent's file under this agent's name", async () => {
    await expectQuarantined(async (path) => {
      const directory = join(path, "..");
      const { path: other } = await storeIn(directory).store.save(record("t", "someone-else", 6));
      renameSync(other, path);
    }, /misplaced: the file holds another agent's memory/);
  });

  const foreign: [string, Partial<CacheIdentity>, RegExp][] = [
    [
      "other weights",
      { weightsFingerprint: "c".repeat(64), modelId: "other/model" },
      /weights fingerprint .*other\/model/,
    ],
    ["other tokenizer", { tokenizerFingerprint: "d".repeat(64) }, /tokenizer fingerprint/],
    ["other backend", { backend: "mlx" }, /backend "mlx" ≠ "webgpu"/],
    ["other layer count", { layers: 3, bytesPerBlock: 3 * 2 * 8 * 4 * 2 * 2 }, /layers "3" ≠ "2"/],
    ["other head count", { kvHeads: 4, bytesPerBlock: 2 * 4 * 8 * 4 * 2 * 2 }, /kv_heads "4" ≠ "2"/],
    ["other head size", { headDim: 16, bytesPerBlock: 2 * 2 * 16 * 4 * 2 * 2 }, /head_dim "16" ≠ "8"/],
    ["other block size", { blockSize: 8, bytesPerBlock: 2 * 2 * 8 * 8 * 2 * 2 }, /block_size "8" ≠ "4"/],
    ["f32 storage", { storage: { kind: "float", dtype: "f32" }, bytesPerBlock: 1024 }, /storage "f32" ≠ "f16"/],
    ["8-bit storage", { storage: { kind: "quantized", bits: 8, groupSize: 64 } }, /storage "q8g64" ≠ "f16"/],
    ["other block bytes", { bytesPerBlock: 300 }, /bytes_per_block "300" ≠ "512"/],
  ];
  it.each(foreign)("a file from %s is foreign", async (_what, change, reason) => {
    const directory = scratchDir();
    const identity = { ...IDENTITY, ...change };
    const agent = record("t", "agent", 13, identity);
    const writer = storeIn(directory, identity).store;
    await writer.save(agent);
    // Foreign is relative to the identity: the writer's own identity loads it.
    expectSameRecord(await writer.load("t", "agent"), agent);
    const { store, warnings } = storeIn(directory);
    expect(await store.load("t", "agent")).toBeNull();
    expect(quarantined(directory)).toHaveLength(1);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatch(/quarantined .* \(foreign: /);
    expect(warnings()[0]).toMatch(reason);
  });

  it("the model id alone is informational: same fingerprints load", async () => {
    const directory = scratchDir();
    const agent = record("t", "renamed-model", 7);
    await storeIn(directory, { ...IDENTITY, modelId: "a/local/path" }).store.save(agent);
    expectSameRecord(await storeIn(directory).store.load("t", "renamed-model"), agent);
  });

  it("scan quarantines bad headers, lists good files, and leaves files that are not its own alone", async () => {
    const directory = scratchDir();
    const { store: writer } = storeIn(directory);
    const good = record("t", "good", 10);
    await writer.save(good);
    const { path: garbled } = await writer.save(record("t", "garbled", 10));
    patch(garbled, 8, "garbage");
    const { path: newer } = await writer.save(record("t", "newer", 10));
    patchHeader(newer, `"format_version":"1"`, `"format_version":"2"`);
    const { path: rotten } = await writer.save(record("t", "rotten", 10));
    patch(rotten, statSync(rotten).size - 1, new Uint8Array([readFileSync(rotten).at(-1)! ^ 0xff]));
    writeFileSync(join(directory, "notes.txt"), "mine");
    writeFileSync(join(directory, ".editor.swp.tmp"), "mine");

    const { store, warnings } = storeIn(directory);
    const entries = await store.scan();
    // Headers only: the rotten data is found when the agent is loaded.
    expect(entries.map((entry) => entry.agentId).sort()).toEqual(["good", "rotten"]);
    expect(warnings()).toHaveLength(2);
    expect(warnings().join("\n")).toMatch(/header is not valid JSON/);
    expect(warnings().join("\n")).toMatch(/newer format/);
    expect(await store.load("t", "rotten")).toBeNull();
    expect(warnings()).toHaveLength(3);
    expectSameRecord(await store.load("t", "good"), good);
    expect(readdirSync(directory).sort()).toEqual(
      [".editor.swp.tmp", AgentStore.fileName("t", "good"), "notes.txt", "quarantine"].sort(),
    );
    expect(quarantined(directory)).toHaveLength(3);
  });
});

describe("agent ids from clients", () => {
  const accepted = [
    "../../etc/passwd",
    "a/b",
    "..",
    ".",
    "/absolute/path",
    "C:\\Windows\\system32",
    "%2e%2e%2f",
    " spaced ",
    "ünïcødé агент 代理 🤖",
    "\u202eright-to-left",
    "x".repeat(512),
    "🤖".repeat(512), // 512 characters, 1024 UTF-16 units
  ];
  it("hostile-looking ids are hashed into the directory and round-trip", async () => {
    const root = scratchDir();
    const directory = join(root, "cache");
    const { store } = storeIn(directory);
    const agents = accepted.map((id) => record("tenant/../..", id, 5));
    for (const agent of agents) await store.save(agent);
    for (const agent of agents) expectSameRecord(await store.load(agent.tenant, agent.agentId), agent);
    expect(readdirSync(root)).toEqual(["cache"]);
    const files = readdirSync(directory);
    expect(files).toHaveLength(accepted.length);
    for (const name of files) expect(name).toMatch(/^agent-[0-9a-f]{64}\.safetensors$/);
    expect((await storeIn(directory).store.scan()).map((entry) => entry.agentId).sort()).toEqual([...accepted].sort());
  });

  const rejected: [string, string, RegExp][] = [
    ["empty", "", /must not be empty/],
    ["513 characters", "x".repeat(513), /longer than 512 characters/],
    ["NUL", "a\0b", /control character/],
    ["newline", "line\nbreak", /control character/],
    ["DEL", "a\x7f", /control character/],
    ["C1 control", "a\u0085", /control character/],
    ["lone surrogate", "a\ud800b", /not well-formed Unicode/],
  ];
  it.each(rejected)(
    "an id that is %s is rejected with a clear error, and nothing is written",
    async (_what, id, why) => {
      const directory = scratchDir();
      const { store } = storeIn(directory);
      expect(() => AgentStore.fileName("t", id)).toThrow(InvalidAgentIdError);
      await expect(store.save(record("t", id, 5))).rejects.toThrow(why);
      await expect(store.load("t", id)).rejects.toThrow(InvalidAgentIdError);
      await expect(store.delete("t", id)).rejects.toThrow(InvalidAgentIdError);
      await expect(store.save(record(id, "ok", 5))).rejects.toThrow(/^tenant /);
      expect(readdirSync(directory)).toEqual([]);
    },
  );
});

describe("fingerprintModel", () => {
  async function modelDirectory(): Promise<string> {
    const directory = scratchDir();
    writeFileSync(join(directory, "config.json"), JSON.stringify({ model_type: "llama", hidden_size: 64 }));
    for (const shard of ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]) {
      const data = new Uint8Array(randomBytes(256 * 1024));
      await writeSafetensors(join(directory, shard), [{ name: "w", dtype: "F32", shape: [256, 256], data }], {
        format: "pt",
      });
    }
    writeFileSync(join(directory, "tokenizer.json"), JSON.stringify({ model: { type: "BPE" } }));
    writeFileSync(join(directory, "tokenizer_config.json"), JSON.stringify({ eos_token: "</s>" }));
    return directory;
  }

  it("is stable, and the same for a copy of the model elsewhere", async () => {
    const directory = await modelDirectory();
    const first = await fingerprintModel(directory);
    expect(first.weights).toMatch(/^[0-9a-f]{64}$/);
    expect(first.tokenizer).toMatch(/^[0-9a-f]{64}$/);
    expect(first.weights).not.toBe(first.tokenizer);
    expect(await fingerprintModel(directory)).toEqual(first);
    const copy = join(scratchDir(), "elsewhere");
    cpSync(directory, copy, { recursive: true });
    expect(await fingerprintModel(copy)).toEqual(first);
  });

  const changes: [string, "weights" | "tokenizer", (directory: string) => void][] = [
    [
      "one byte of a safetensors header",
      "weights",
      (d) => patchHeader(join(d, "model-00002-of-00002.safetensors"), '"pt"', '"pu"'),
    ],
    [
      "the weights' numbers (a fine-tune)",
      "weights",
      (d) => {
        const path = join(d, "model-00001-of-00002.safetensors");
        const file = readFileSync(path);
        randomBytes(256 * 1024).copy(file, 8 + Number(file.readBigUInt64LE(0)));
        writeFileSync(path, file);
      },
    ],
    [
      "config.json",
      "weights",
      (d) => writeFileSync(join(d, "config.json"), JSON.stringify({ model_type: "llama", hidden_size: 65 })),
    ],
    [
      "tokenizer.json",
      "tokenizer",
      (d) => writeFileSync(join(d, "tokenizer.json"), JSON.stringify({ model: { type: "BPF" } })),
    ],
    ["tokenizer_config.json", "tokenizer", (d) => writeFileSync(join(d, "tokenizer_config.json"), "{}")],
    ["an added chat template", "tokenizer", (d) => writeFileSync(join(d, "chat_template.jinja"), "{{ messages }}")],
  ];
  it.each(changes)("changing %s changes the %s fingerprint only", async (_what, which, change) => {
    const directory = await modelDirectory();
    const before = await fingerprintModel(directory);
    change(directory);
    const after = await fingerprintModel(directory);
    const other = which === "weights" ? "tokenizer" : "weights";
    expect(after[which]).not.toBe(before[which]);
    expect(after[other]).toBe(before[other]);
  });
});
