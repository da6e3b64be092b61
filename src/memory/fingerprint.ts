/**
 * Cheap, stable fingerprints of a model directory, so a KV file is only reused by the model and
 * tokenizer that produced it. Stable: the same files give the same fingerprint wherever they live
 * (paths are not hashed, file names are). Cheap: a 16 GB model costs its headers plus a few reads.
 *
 * weights   = sha256 over config.json and, for every *.safetensors file: its name, size, header
 *             bytes, and 16 samples of 4 KiB spread evenly over its data (first and last included).
 *             The samples are what tells a fine-tune from its base model: same config, same headers,
 *             different numbers everywhere.
 * tokenizer = sha256 over tokenizer.json, tokenizer_config.json, tokenizer.model and every
 *             chat_template* file (a missing one hashes as missing, so adding one changes it).
 */
import { createHash, type Hash } from "node:crypto";
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

const FINGERPRINT_VERSION = "agent-memory fingerprint v1";
const SAMPLES_PER_FILE = 16;
const SAMPLE_BYTES = 4096;
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export async function fingerprintModel(directory: string): Promise<{ weights: string; tokenizer: string }> {
  const names = (await readdir(directory)).sort();

  const weights = createHash("sha256").update(`${FINGERPRINT_VERSION} weights\0`);
  await hashWholeFile(weights, directory, "config.json");
  for (const name of names.filter((candidate) => candidate.endsWith(".safetensors"))) {
    await hashSafetensorsSketch(weights, directory, name);
  }

  const tokenizer = createHash("sha256").update(`${FINGERPRINT_VERSION} tokenizer\0`);
  const templates = names.filter((candidate) => candidate.startsWith("chat_template"));
  for (const name of ["tokenizer.json", "tokenizer_config.json", "tokenizer.model", ...templates]) {
    await hashWholeFile(tokenizer, directory, name);
  }
  return { weights: weights.digest("hex"), tokenizer: tokenizer.digest("hex") };
}

async function hashWholeFile(hash: Hash, directory: string, name: string): Promise<void> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(directory, name));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    hash.update(JSON.stringify([name, "missing"]));
    return;
  }
  hash.update(JSON.stringify([name, bytes.length]));
  hash.update(bytes);
}

async function hashSafetensorsSketch(hash: Hash, directory: string, name: string): Promise<void> {
  const handle = await open(join(directory, name), "r");
  try {
    const { size } = await handle.stat();
    const lengthBytes = Buffer.alloc(8);
    await handle.read(lengthBytes, 0, Math.min(8, size), 0);
    // A malformed header is the loader's business; here it only has to hash deterministically.
    const declared = lengthBytes.readBigUInt64LE(0);
    const headerEnd = Math.min(size, 8 + (declared > BigInt(MAX_HEADER_BYTES) ? 0 : Number(declared)));
    const samples: [number, number][] = [[0, headerEnd]];
    const dataBytes = size - headerEnd;
    for (let i = 0; i < SAMPLES_PER_FILE && dataBytes > 0; i++) {
      const start =
        headerEnd + Math.floor(((dataBytes - Math.min(SAMPLE_BYTES, dataBytes)) * i) / (SAMPLES_PER_FILE - 1));
      samples.push([start, Math.min(start + SAMPLE_BYTES, size)]);
    }
    hash.update(JSON.stringify([name, size, samples]));
    for (const [start, end] of samples) {
      const bytes = Buffer.alloc(end - start);
      const { bytesRead } = await handle.read(bytes, 0, bytes.length, start);
      hash.update(bytes.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
}
