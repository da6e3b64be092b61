/**
 * Model location and download against a local imitation of the hub's file endpoints: the cache layout
 * mlx-lm uses, resume of a partial download, offline and network errors that name repo and files.
 */
import { lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ModelNotFoundError, hubCacheDirectory, resolveModelDirectory } from "../../src/model/hub.js";
import { scratchDir } from "../support/cli.js";
import { startImitationHub, type ImitationHub } from "../support/imitation-hub.js";

const REPO = "test-org/tiny-model";
// Over 1 MB: @huggingface/hub fetches smaller files whole, so only larger ones show ranged resumes.
const weights = Buffer.from(Array.from({ length: 2_500_000 }, (_, i) => (i * 7) % 251));
const FILES = [
  { path: "config.json", content: Buffer.from('{"model_type":"llama"}') },
  { path: "tokenizer.json", content: Buffer.from('{"version":"1.0"}') },
  { path: "model.safetensors", content: weights },
  { path: "README.md", content: Buffer.from("not needed") },
];

const hubs: ImitationHub[] = [];
afterEach(async () => Promise.all(hubs.splice(0).map((hub) => hub.close())));

async function hubWithRepo() {
  const hub = await startImitationHub(REPO, FILES);
  hubs.push(hub);
  return hub;
}

const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;

describe("resolveModelDirectory", () => {
  it("uses a local directory as it is", async () => {
    const dir = scratchDir();
    expect(await resolveModelDirectory(dir, { env: {} })).toBe(dir);
  });

  it("finds the cache where HF_HUB_CACHE, then HF_HOME, then ~/.cache say", () => {
    expect(hubCacheDirectory({ HF_HUB_CACHE: "/a", HF_HOME: "/b" })).toBe("/a");
    expect(hubCacheDirectory({ HF_HOME: "/b" })).toBe("/b/hub");
    expect(hubCacheDirectory({})).toMatch(/\.cache\/huggingface\/hub$/);
  });

  it("downloads the model's files into the hub cache layout, then finds them offline", async () => {
    const hub = await hubWithRepo();
    const cache = scratchDir();
    const env = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url };
    const snapshot = await resolveModelDirectory(REPO, { env, progressStream: quiet });
    const folder = join(cache, "models--test-org--tiny-model");
    expect(snapshot).toBe(join(folder, "snapshots", hub.commit));
    expect(readFileSync(join(folder, "refs", "main"), "utf8")).toBe(hub.commit);
    expect(lstatSync(join(snapshot, "model.safetensors")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(snapshot, "model.safetensors"))).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    expect(readFileSync(join(snapshot, "model.safetensors")).equals(weights)).toBe(true);
    expect(() => lstatSync(join(snapshot, "README.md"))).toThrow();

    await hub.close();
    hubs.length = 0;
    expect(await resolveModelDirectory(REPO, { env: { ...env, HF_HUB_OFFLINE: "1" } })).toBe(snapshot);
  });

  it("resumes a partial download from where it stopped", async () => {
    const hub = await hubWithRepo();
    const cache = scratchDir();
    const env = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url };
    hub.cutAfterBytes = 1_000_000;
    await expect(resolveModelDirectory(REPO, { env, progressStream: quiet })).rejects.toThrow(ModelNotFoundError);
    hub.cutAfterBytes = null;
    hub.requests.length = 0;
    const snapshot = await resolveModelDirectory(REPO, { env, progressStream: quiet });
    expect(readFileSync(join(snapshot, "model.safetensors")).equals(weights)).toBe(true);
    const weightRanges = hub.requests.filter(
      (r) => r.path.endsWith("model.safetensors") && r.range && r.range !== "bytes=0-0",
    );
    expect(weightRanges.map((r) => r.range)).toEqual([expect.stringMatching(/^bytes=(\d+)-/)]);
    const resumedFrom = Number(weightRanges[0]!.range!.match(/^bytes=(\d+)-/)![1]);
    expect(resumedFrom).toBeGreaterThan(0);
  });

  it("offline with nothing cached: one error naming the repo and the missing files", async () => {
    const cache = scratchDir();
    await expect(resolveModelDirectory(REPO, { env: { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1" } })).rejects.toThrow(
      /^model test-org\/tiny-model is not complete in the Hugging Face cache \(.*models--test-org--tiny-model\) and HF_HUB_OFFLINE is set; missing: config\.json, tokenizer\.json, model weights/,
    );
  });

  it("offline with a partial snapshot names exactly the shards that are missing", async () => {
    const cache = scratchDir();
    const folder = join(cache, "models--test-org--tiny-model");
    const snapshot = join(folder, "snapshots", "a".repeat(40));
    mkdirSync(snapshot, { recursive: true });
    mkdirSync(join(folder, "refs"));
    writeFileSync(join(folder, "refs", "main"), "a".repeat(40));
    writeFileSync(join(snapshot, "config.json"), "{}");
    writeFileSync(join(snapshot, "tokenizer.json"), "{}");
    writeFileSync(
      join(snapshot, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" } }),
    );
    writeFileSync(join(snapshot, "model-00001-of-00002.safetensors"), "");
    await expect(resolveModelDirectory(REPO, { env: { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1" } })).rejects.toThrow(
      /missing: model-00002-of-00002\.safetensors$/,
    );
  });

  it("without network: one error naming the repo, the endpoint and the missing files", async () => {
    const hub = await hubWithRepo();
    const deadEndpoint = hub.url;
    await hub.close();
    hubs.length = 0;
    await expect(
      resolveModelDirectory(REPO, {
        env: { HF_HUB_CACHE: scratchDir(), HF_ENDPOINT: deadEndpoint },
        progressStream: quiet,
      }),
    ).rejects.toThrow(
      new RegExp(`^cannot download model test-org/tiny-model from ${deadEndpoint} \\(.+\\); missing: config\\.json`),
    );
  });

  it("refuses something that is neither a directory nor a repo id", async () => {
    await expect(resolveModelDirectory("/no/such/dir/model", { env: {} })).rejects.toThrow(
      "model /no/such/dir/model: no such directory, and not a Hugging Face repo id (org/name)",
    );
  });
});
