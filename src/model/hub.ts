/**
 * Finding a model: a local directory, or a Hugging Face repo id resolved in the hub cache layout that
 * mlx-lm and huggingface_hub use (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else ~/.cache/huggingface/hub;
 * `models--org--name/{refs/main, snapshots/<commit>/, blobs/<etag>}`), so a model a user already
 * downloaded is found without a second download. Missing files are fetched with @huggingface/hub
 * (from `$HF_ENDPOINT` when set), resumed from a previous partial download, with progress.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, open, rename, stat, symlink, unlink, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { downloadFile, listFiles } from "@huggingface/hub";
import { createProgress } from "../progress.js";

/** Files of a model directory that agent-memory reads; everything else in a repo is left behind. */
const WANTED =
  /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|tokenizer\.model|chat_template\.(jinja|json)|model\.safetensors\.index\.json|[^/]*\.safetensors)$/;

export class ModelNotFoundError extends Error {
  override name = "ModelNotFoundError";
}

export interface HubOptions {
  env?: NodeJS.ProcessEnv;
  revision?: string;
  /** Where progress goes (stderr by default). */
  progressStream?: NodeJS.WriteStream;
}

export function hubCacheDirectory(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, "hub");
  return join(homedir(), ".cache", "huggingface", "hub");
}

function repoFolder(cache: string, repo: string): string {
  return join(cache, `models--${repo.split("/").join("--")}`);
}

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

/**
 * The directory holding `model`'s files: `model` itself when it is a directory, else the cached
 * snapshot of the repo, downloading what is missing unless HF_HUB_OFFLINE is set.
 */
export async function resolveModelDirectory(model: string, options: HubOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const asPath = model.startsWith("~/") ? join(homedir(), model.slice(2)) : model;
  if (existsSync(asPath)) return asPath;
  if (!REPO_ID.test(model)) {
    throw new ModelNotFoundError(`model ${model}: no such directory, and not a Hugging Face repo id (org/name)`);
  }
  const revision = options.revision ?? "main";
  const cache = hubCacheDirectory(env);
  const folder = repoFolder(cache, model);
  const cached = cachedSnapshot(folder, revision);
  const missingFromCache = cached
    ? missingFiles(cached)
    : ["config.json", "tokenizer.json", "model weights (*.safetensors)"];
  if (cached && missingFromCache.length === 0) return cached;

  const offline = ["1", "true", "yes", "on"].includes((env.HF_HUB_OFFLINE ?? "").toLowerCase());
  if (offline) {
    throw new ModelNotFoundError(
      `model ${model} is not complete in the Hugging Face cache (${folder}) and HF_HUB_OFFLINE is set; ` +
        `missing: ${missingFromCache.join(", ")}`,
    );
  }
  try {
    return await download(model, revision, folder, env, options.progressStream);
  } catch (error) {
    if (error instanceof ModelNotFoundError) throw error;
    const endpoint = env.HF_ENDPOINT ?? "https://huggingface.co";
    const cause =
      error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
    throw new ModelNotFoundError(
      `cannot download model ${model} from ${endpoint} (${cause}); missing: ${missingFromCache.join(", ")}. ` +
        `Download it where there is network, or point --model at a local directory`,
    );
  }
}

function cachedSnapshot(folder: string, revision: string): string | null {
  const commit = /^[0-9a-f]{40}$/.test(revision) ? revision : readRef(folder, revision);
  if (!commit) return null;
  const snapshot = join(folder, "snapshots", commit);
  return existsSync(snapshot) ? snapshot : null;
}

function readRef(folder: string, revision: string): string | null {
  try {
    return readFileSync(join(folder, "refs", revision), "utf8").trim();
  } catch {
    return null;
  }
}

/** What a snapshot lacks to be loaded: config, tokenizer, and every weight shard the index names. */
export function missingFiles(directory: string): string[] {
  const missing = ["config.json", "tokenizer.json"].filter((file) => !existsSync(join(directory, file)));
  const index = join(directory, "model.safetensors.index.json");
  if (existsSync(index)) {
    const { weight_map: weightMap } = JSON.parse(readFileSync(index, "utf8")) as { weight_map: Record<string, string> };
    for (const shard of new Set(Object.values(weightMap))) {
      if (!existsSync(join(directory, shard))) missing.push(shard);
    }
  } else if (!existsSync(join(directory, "model.safetensors"))) {
    missing.push("model.safetensors (or model.safetensors.index.json)");
  }
  return missing;
}

interface RemoteFile {
  path: string;
  size: number;
  etag: string;
}

async function download(
  repo: string,
  revision: string,
  folder: string,
  env: NodeJS.ProcessEnv,
  progressStream?: NodeJS.WriteStream,
): Promise<string> {
  const hubUrl = env.HF_ENDPOINT;
  const accessToken = env.HF_TOKEN;
  const files: RemoteFile[] = [];
  let commit: string | null = null;
  for await (const entry of listFiles({ repo, revision, recursive: true, expand: true, hubUrl, accessToken })) {
    if (entry.type !== "file" || !WANTED.test(entry.path)) continue;
    const etag = entry.lfs?.oid ?? entry.oid;
    if (!etag) throw new Error(`the hub listed ${entry.path} without an object id`);
    files.push({ path: entry.path, size: entry.lfs?.size ?? entry.size, etag });
    commit ??= entry.lastCommit?.id ?? null;
  }
  if (files.length === 0)
    throw new ModelNotFoundError(`model ${repo}: the repo has no config, tokenizer or safetensors files`);
  commit ??= /^[0-9a-f]{40}$/.test(revision) ? revision : await resolveCommit(repo, revision, hubUrl, accessToken);

  const snapshot = join(folder, "snapshots", commit);
  const pending: RemoteFile[] = [];
  for (const file of files) {
    const blob = join(folder, "blobs", file.etag);
    if (!(await hasSize(blob, file.size))) pending.push(file);
    else await link(blob, join(snapshot, file.path));
  }
  const total = pending.reduce((sum, file) => sum + file.size, 0);
  const progress = createProgress({ label: `downloading ${repo}`, totalBytes: total, stream: progressStream });
  for (const file of pending) {
    const blob = join(folder, "blobs", file.etag);
    await fetchResumable(repo, commit, file, blob, hubUrl, accessToken, (bytes) => progress.advance(bytes));
    await link(blob, join(snapshot, file.path));
  }
  progress.done();
  await mkdir(join(folder, "refs"), { recursive: true });
  if (!/^[0-9a-f]{40}$/.test(revision)) await writeFile(join(folder, "refs", revision), commit);
  const missing = missingFiles(snapshot);
  if (missing.length > 0) throw new ModelNotFoundError(`model ${repo}: the repo lacks ${missing.join(", ")}`);
  return snapshot;
}

/** The commit a branch points at, from the resolve endpoint's X-Repo-Commit header. */
async function resolveCommit(repo: string, revision: string, hubUrl?: string, accessToken?: string): Promise<string> {
  const url = `${hubUrl ?? "https://huggingface.co"}/${repo}/resolve/${revision}/config.json`;
  const response = await fetch(url, {
    method: "HEAD",
    headers: accessToken ? { authorization: `Bearer ${accessToken}` } : {},
  });
  const commit = response.headers.get("x-repo-commit");
  if (!commit) throw new Error(`no commit id for ${repo}@${revision}`);
  return commit;
}

/** Downloads into `<blob>.incomplete`, continuing from its current length, then renames it into place. */
async function fetchResumable(
  repo: string,
  commit: string,
  file: RemoteFile,
  blobPath: string,
  hubUrl: string | undefined,
  accessToken: string | undefined,
  onBytes: (bytes: number) => void,
): Promise<void> {
  await mkdir(dirname(blobPath), { recursive: true });
  const incomplete = `${blobPath}.incomplete`;
  const already = await stat(incomplete).then(
    (info) => (info.size <= file.size ? info.size : 0),
    () => 0,
  );
  if (already === 0) await unlink(incomplete).catch(() => undefined);
  onBytes(0);
  const blob = await downloadFile({ repo, path: file.path, revision: commit, hubUrl, accessToken, xet: true });
  if (!blob) throw new ModelNotFoundError(`model ${repo}: ${file.path} disappeared from the repo`);
  const handle = await open(incomplete, already > 0 ? "a" : "w");
  try {
    if (already < file.size) {
      const reader = blob.slice(already).stream().getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await handle.write(value);
        onBytes(value.byteLength);
      }
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  const { size } = await stat(incomplete);
  if (size !== file.size) throw new Error(`${file.path}: got ${size} bytes, expected ${file.size}`);
  await rename(incomplete, blobPath);
}

async function hasSize(path: string, size: number): Promise<boolean> {
  return stat(path).then(
    (info) => info.size === size,
    () => false,
  );
}

/** The snapshot entry is a relative symlink to its blob, as huggingface_hub makes it. */
async function link(blob: string, entry: string): Promise<void> {
  await mkdir(dirname(entry), { recursive: true });
  await unlink(entry).catch(() => undefined);
  await symlink(relative(dirname(entry), blob), entry);
}
