/**
 * Loading a model directory onto a backend, and every way a directory can be broken: each fails at
 * load with one line that names the file and the tensor or field. Directories come from the real
 * `agent-memory make-test-model`, then are damaged the way downloads and hand edits damage them.
 */
import { execFile } from "node:child_process";
import { cp, readFile, readdir, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import type { Backend, OpName } from "../../backends/contract.js";
import { createBackend } from "../../backends/registry.js";
import { loadModel } from "../../src/model/load.js";
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from "../../src/model/safetensors.js";
import { CLI, runCli, scratchDir, startServe, testModelDirectory } from "../support/cli.js";

const run = promisify(execFile);

async function makeModel(...flags: string[]): Promise<string> {
  const directory = join(scratchDir(), "model");
  await run(process.execPath, [CLI, "make-test-model", "--preset", "tiny", "--out", directory, ...flags]);
  return directory;
}

async function copyOf(directory: string): Promise<string> {
  const copy = join(scratchDir(), "model");
  await cp(directory, copy, { recursive: true });
  return copy;
}

async function editConfig(directory: string, edit: (config: Record<string, unknown>) => void): Promise<void> {
  const path = join(directory, "config.json");
  const config = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  edit(config);
  await writeFile(path, JSON.stringify(config));
}

/** Rewrites a safetensors file without the tensors `drop` selects. */
async function dropTensors(path: string, drop: (name: string) => boolean): Promise<void> {
  const file = await SafetensorsFile.open(path);
  const kept: TensorToWrite[] = [];
  for (const [name, entry] of file.tensors) {
    if (!drop(name)) kept.push({ name, dtype: entry.dtype, shape: entry.shape, data: await file.read(name) });
  }
  await file.close();
  await writeSafetensors(path, kept);
}

async function loadError(directory: string, backend: Backend): Promise<string> {
  const error = await loadModel(directory, backend, { progressStream: null }).then(
    () => null,
    (failure: Error) => failure,
  );
  expect(error, "the load should have failed").not.toBeNull();
  expect(error!.message, "one line").not.toContain("\n");
  return error!.message;
}

describe("loading a model directory", () => {
  let backend: Backend;
  let llama: string;
  let sharded: string;
  let quantized: string;
  beforeAll(async () => {
    backend = await createBackend("webgpu");
    [llama, sharded, quantized] = await Promise.all([
      makeModel("--arch", "llama"),
      makeModel("--arch", "qwen3", "--max-shard-mb", "1"),
      makeModel("--arch", "llama", "--bits", "4"),
    ]);
  }, 120_000);

  it("loads sharded checkpoints, reports the bytes read and the time taken, and uses every tensor", async () => {
    const shards = (await readdir(sharded)).filter((name) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(name));
    expect(shards.length).toBeGreaterThan(1);
    const loaded = await loadModel(sharded, backend, { progressStream: null });
    expect(loaded.config.architecture).toBe("qwen3");
    expect(loaded.unusedTensors).toEqual([]);
    expect(loaded.loadSeconds).toBeGreaterThan(0);
    const { metadata } = JSON.parse(await readFile(join(sharded, "model.safetensors.index.json"), "utf8")) as {
      metadata: { total_size: number };
    };
    expect(loaded.bytes).toBe(metadata.total_size);
    loaded.model.dispose();
  });

  it("shows a progress bar with bytes, rate and ETA once a load takes longer than the threshold", async () => {
    const stream = new PassThrough();
    let written = "";
    stream.on("data", (chunk: Buffer) => (written += chunk.toString()));
    const loaded = await loadModel(llama, backend, {
      progressStream: stream as unknown as NodeJS.WriteStream,
      progressAfterMs: 0,
    });
    loaded.model.dispose();
    expect(written).toMatch(/loading weights: 100% +[\d.]+ [KM]?B \/ [\d.]+ [KM]?B +[\d.]+ [KM]?B\/s +ETA/);
  });

  it("names the missing shard", async () => {
    const directory = await copyOf(sharded);
    const shard = (await readdir(directory)).filter((name) => name.startsWith("model-")).sort()[1]!;
    await rm(join(directory, shard));
    const message = await loadError(directory, backend);
    expect(message).toContain(`${shard} is missing (listed in model.safetensors.index.json)`);
  });

  it("names a truncated safetensors file", async () => {
    const directory = await copyOf(llama);
    const path = join(directory, "model.safetensors");
    const file = await SafetensorsFile.open(path);
    const size = Math.max(...[...file.tensors.values()].map((entry) => entry.fileOffset + entry.byteLength));
    await file.close();
    await truncate(path, size - 100);
    const message = await loadError(directory, backend);
    expect(message).toContain(path);
    expect(message).toMatch(/truncated|exceeds|beyond|past the end/i);
  });

  it("names an unknown architecture and lists the supported ones", async () => {
    const directory = await copyOf(llama);
    await editConfig(directory, (config) => (config.model_type = "mamba2"));
    const message = await loadError(directory, backend);
    expect(message).toMatch(
      /config\.json: model_type "mamba2" is not supported \(supported: llama, qwen2, qwen3, gemma3/,
    );
  });

  it("names unsupported quantization bits and modes", async () => {
    const threeBit = await copyOf(quantized);
    await editConfig(threeBit, (config) => ((config.quantization as Record<string, unknown>).bits = 3));
    expect(await loadError(threeBit, backend)).toMatch(
      /config\.json: quantization\.bits 3 is not supported \(supported: 4, 8\)/,
    );
    const mxfp4 = await copyOf(quantized);
    await editConfig(mxfp4, (config) => ((config.quantization as Record<string, unknown>).mode = "mxfp4"));
    expect(await loadError(mxfp4, backend)).toMatch(/quantization\.mode "mxfp4" is not supported/);
  });

  it("names the tensor when config.json's bits disagree with the stored weights", async () => {
    const directory = await copyOf(quantized);
    await editConfig(directory, (config) => {
      (config.quantization as Record<string, unknown>).bits = 8;
      delete config.quantization_config;
    });
    const message = await loadError(directory, backend);
    expect(message).toMatch(
      /model\.safetensors: tensor "model\.[\w.]+\.weight" is U32 \[.*8-bit quantization.*check quantization\.bits in config\.json/,
    );
  });

  it("names a tensor missing from the checkpoint", async () => {
    const directory = await copyOf(llama);
    await dropTensors(join(directory, "model.safetensors"), (name) => name === "model.layers.1.mlp.up_proj.weight");
    const message = await loadError(directory, backend);
    expect(message).toContain('tensor "model.layers.1.mlp.up_proj.weight" is missing from the checkpoint');
  });

  it("names a tensor whose shape disagrees with config.json", async () => {
    const directory = await copyOf(llama);
    await editConfig(directory, (config) => (config.intermediate_size = (config.intermediate_size as number) * 2));
    const message = await loadError(directory, backend);
    expect(message).toMatch(
      /tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[\d+,\d+\], config\.json implies/,
    );
  });

  it("names every op a backend lacks before reading any weights", async () => {
    const lacking: OpName = "matmul_quantized";
    const partial = Object.create(backend, {
      supportedOps: { value: new Set([...backend.supportedOps].filter((op) => op !== lacking)) },
      name: { value: "partial" },
    }) as Backend;
    const message = await loadError(quantized, partial);
    expect(message).toBe("the partial backend does not implement: matmul_quantized");
  });
});

describe("agent-memory serve with a broken model", () => {
  it("exits 1 with one line naming the file, after listening", async () => {
    const directory = join(scratchDir(), "model");
    await run(process.execPath, [CLI, "make-test-model", "--arch", "gemma3", "--preset", "tiny", "--out", directory]);
    await editConfig(directory, (config) => {
      const text = config.text_config as Record<string, number>;
      text.num_key_value_heads = text.num_attention_heads! + 1;
    });
    const result = await runCli(["serve", "--port", "0", "--model", directory]);
    expect(result.code).toBe(1);
    const errors = result.stderr.split("\n").filter((line) => line.includes("ERROR"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(
      /cannot load the model: .*config\.json: text_config\.num_attention_heads \d+ is not a multiple of num_key_value_heads \d+$/,
    );
  });

  it("exits 1 naming tokenizer.json when it is corrupt, before streaming the weights", async () => {
    const directory = await copyOf(testModelDirectory());
    await writeFile(join(directory, "tokenizer.json"), '{"model": ');
    const result = await runCli(["serve", "--port", "0", "--model", directory]);
    expect(result.code).toBe(1);
    const errors = result.stderr.split("\n").filter((line) => line.includes("ERROR"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(join(directory, "tokenizer.json"));
    expect(result.stderr).not.toMatch(/loaded in/);
  });

  it("reports loading, then ready with the model on /status", async () => {
    const server = await startServe();
    const status = (await (await fetch(server.url + "/status")).json()) as {
      state: string;
      backend: { active: string };
      model: { loaded: boolean };
      memory: { weights_bytes: number };
    };
    expect(status.state).toBe("ready");
    expect(status.backend.active).toBe("webgpu");
    expect(status.model.loaded).toBe(true);
    expect(status.memory.weights_bytes).toBeGreaterThan(0);
    expect(server.log()).toMatch(/model .* loaded in [\d.]+ s: llama/);
    // The engine and agent memory come up behind it, sized by the settings (64 MiB of KV in tests).
    expect(server.log()).toMatch(/engine: batch 8, prefill chunks of 512, context \d+ tokens, 64 MiB of KV blocks/);
    expect(server.log()).toMatch(/agent memory: 0 agent\(s\) on disk/);
    expect(server.log()).not.toMatch(/warmed up/); // off in tests unless asked for
    server.child.kill("SIGTERM");
    expect((await server.exited).code).toBe(0);
  });

  it("warms the engine up before it reports ready, and serves afterwards", async () => {
    const server = await startServe([], { env: { SEMANTIC_MLX_WARMUP: "true" } });
    const log = server.log();
    expect(log).toMatch(/engine: warmed up in [\d.]+ s \(\d+ requests: a prompt, batches of 1–8\)/);
    // Ready only after it: the warm-up line comes before the ready line.
    expect(log.indexOf("warmed up")).toBeLessThan(log.indexOf("ready:"));
    const response = await fetch(server.url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "test", max_tokens: 3, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { usage: { completion_tokens: number; prompt_tokens: number } };
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    // The warm-up's requests are not anybody's: the first real request finds no cached prefix.
    const metrics = await (await fetch(server.url + "/metrics")).text();
    expect(metrics).toMatch(/semantic_cache_misses_total 1\b/);
    server.child.kill("SIGTERM");
    expect((await server.exited).code).toBe(0);
  });
});
