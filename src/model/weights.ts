/**
 * A model directory's weights: one `model.safetensors` or shards listed in
 * `model.safetensors.index.json`, read tensor by tensor straight onto the backend, so a model never
 * sits whole in JS memory. Names are the checkpoint's own (`model.layers.0.self_attn.q_proj.weight`);
 * multimodal checkpoints' `language_model.` prefix is applied here, and their vision tensors are never
 * read. A module stored MLX-quantized (`weight` + `scales` + `biases`) comes back as a QuantizedMatrix
 * with the bits and group size config.json declares for it, checked against the stored shapes.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Backend, DType, HostArray, Matrix, Tensor } from "../../backends/contract.js";
import { createProgress, type Progress } from "../progress.js";
import type { ModelConfig, QuantizationSpec } from "./config.js";
import { widen } from "./numeric.js";
import { SafetensorsFile, type SafetensorsDType, type TensorEntry } from "./safetensors.js";

export class ModelWeightsError extends Error {
  override name = "ModelWeightsError";
}

const BACKEND_DTYPES: Partial<Record<SafetensorsDType, DType>> = {
  F32: "f32",
  F16: "f16",
  BF16: "bf16",
  U32: "u32",
  I32: "i32",
};

/** Shows a progress bar only once a load has taken over a second: quick loads stay quiet. */
class DelayedProgress {
  private readonly started = performance.now();
  private bar: Progress | null = null;
  private loaded = 0;

  constructor(
    private readonly label: string,
    private readonly totalBytes: number,
    private readonly stream: NodeJS.WriteStream | null,
    private readonly afterMs: number,
  ) {}

  advance(bytes: number): void {
    this.loaded += bytes;
    if (this.bar) this.bar.advance(bytes);
    else if (this.stream && performance.now() - this.started >= this.afterMs) {
      this.bar = createProgress({ label: this.label, totalBytes: this.totalBytes, stream: this.stream });
      this.bar.advance(this.loaded);
    }
  }

  done(): void {
    this.bar?.done();
  }
}

export interface WeightLoadOptions {
  /** Where the progress bar goes when loading takes over a second; null for none. Default stderr. */
  progressStream?: NodeJS.WriteStream | null;
  /** Milliseconds a load may take before the bar appears (default 1000). */
  progressAfterMs?: number;
}

export class ModelWeights {
  private readonly used = new Set<string>();
  /** Everything uploaded, so a load that fails half-way can give the device memory back. */
  private readonly uploaded: { backend: Backend; tensor: Tensor }[] = [];
  private progress: DelayedProgress;
  private bytesLoaded = 0;

  private constructor(
    readonly directory: string,
    private readonly config: ModelConfig,
    private readonly files: readonly SafetensorsFile[],
    private readonly located: ReadonlyMap<string, SafetensorsFile>,
    options: WeightLoadOptions,
  ) {
    this.progress = new DelayedProgress(
      "loading weights",
      this.totalBytes(),
      options.progressStream === undefined ? process.stderr : options.progressStream,
      options.progressAfterMs ?? 1000,
    );
  }

  static async open(directory: string, config: ModelConfig, options: WeightLoadOptions = {}): Promise<ModelWeights> {
    const shardNames = await listShards(directory);
    const files: SafetensorsFile[] = [];
    try {
      for (const name of shardNames) files.push(await SafetensorsFile.open(join(directory, name)));
    } catch (error) {
      await Promise.all(files.map((file) => file.close()));
      throw error;
    }
    const located = new Map<string, SafetensorsFile>();
    for (const file of files) {
      for (const name of file.tensors.keys()) {
        if (!name.startsWith(config.weightPrefix)) continue;
        const local = name.slice(config.weightPrefix.length);
        if (located.has(local)) {
          throw new ModelWeightsError(`${file.path}: tensor "${name}" also appears in ${located.get(local)!.path}`);
        }
        located.set(local, file);
      }
    }
    return new ModelWeights(directory, config, files, located, options);
  }

  has(name: string): boolean {
    return this.located.has(name);
  }

  /** Bytes of the tensors this model's architecture can read (vision towers excluded). */
  totalBytes(): number {
    let total = 0;
    for (const [name, file] of this.located) total += file.entry(this.config.weightPrefix + name).byteLength;
    return total;
  }

  get loadedBytes(): number {
    return this.bytesLoaded;
  }

  /** A tensor uploaded as stored (f32/f16/bf16/u32/i32), its shape checked when `shape` is given. */
  async tensor(backend: Backend, name: string, shape?: readonly number[]): Promise<Tensor> {
    const { entry, bytes } = await this.read(name);
    if (shape) this.expectShape(name, entry, shape);
    const dtype = BACKEND_DTYPES[entry.dtype];
    if (!dtype) throw this.fail(name, `dtype ${entry.dtype} is not a weight type (expected F32, F16 or BF16)`);
    const tensor = backend.upload(view(bytes, dtype), entry.shape, dtype, "weights");
    this.uploaded.push({ backend, tensor });
    return tensor;
  }

  /** Upload a tensor the model prepared on the host from stored ones (tracked like loaded weights). */
  upload(backend: Backend, data: HostArray, shape: readonly number[], dtype: DType): Tensor {
    const tensor = backend.upload(data, shape, dtype, "weights");
    this.uploaded.push({ backend, tensor });
    return tensor;
  }

  /** Free every tensor this loader uploaded (after a failed load). */
  discardUploads(): void {
    for (const { backend, tensor } of this.uploaded.splice(0)) backend.free(tensor);
  }

  /** A tensor's values as float32 on the host (for the small tensors a model prepares itself). */
  async float32(name: string, shape?: readonly number[]): Promise<{ values: Float32Array; dtype: DType }> {
    const { entry, bytes } = await this.read(name);
    if (shape) this.expectShape(name, entry, shape);
    const dtype = BACKEND_DTYPES[entry.dtype];
    if (dtype !== "f32" && dtype !== "f16" && dtype !== "bf16") {
      throw this.fail(name, `dtype ${entry.dtype} is not a float type`);
    }
    if (dtype === "f32") return { values: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4), dtype };
    return { values: widen(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2), dtype), dtype };
  }

  /**
   * The weight matrix of a linear or embedding module (`module` is its path, e.g.
   * `model.layers.0.mlp.down_proj`), [rows, cols] — quantized when the checkpoint stores it so.
   */
  async matrix(backend: Backend, module: string, rows: number, cols: number): Promise<Matrix> {
    if (!this.has(`${module}.scales`)) {
      if (this.has(`${module}.biases`)) throw this.fail(`${module}.scales`, "is missing (biases exist without scales)");
      return this.tensor(backend, `${module}.weight`, [rows, cols]);
    }
    const spec = this.quantizationOf(module);
    const packedCols = (cols * spec.bits) / 32;
    const groups = cols / spec.groupSize;
    const weightEntry = this.entryOf(`${module}.weight`);
    if (weightEntry.dtype !== "U32" || weightEntry.shape[0] !== rows || weightEntry.shape[1] !== packedCols) {
      throw this.fail(
        `${module}.weight`,
        `is ${weightEntry.dtype} ${JSON.stringify(weightEntry.shape)}, but ${spec.bits}-bit quantization of [${rows}, ${cols}] stores U32 [${rows}, ${packedCols}] (check quantization.bits in config.json)`,
      );
    }
    const weight = await this.tensor(backend, `${module}.weight`);
    const scales = await this.tensor(backend, `${module}.scales`, [rows, groups]).catch((error: Error) => {
      backend.free(weight);
      throw new ModelWeightsError(`${error.message} (check quantization.group_size in config.json)`);
    });
    const biases = await this.tensor(backend, `${module}.biases`, [rows, groups]);
    return { kind: "quantized", weight, scales, biases, rows, cols, groupSize: spec.groupSize, bits: spec.bits };
  }

  /** Tensors of the checkpoint the architecture never asked for (other than known leftovers). */
  unusedTensors(): string[] {
    return [...this.located.keys()].filter((name) => !this.used.has(name) && !name.endsWith("rotary_emb.inv_freq"));
  }

  finish(): void {
    this.progress.done();
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((file) => file.close()));
  }

  private quantizationOf(module: string): QuantizationSpec {
    const quantization = this.config.quantization;
    if (!quantization) {
      throw this.fail(`${module}.scales`, "is quantized but config.json has no `quantization` section");
    }
    const override =
      quantization.overrides.get(this.config.weightPrefix + module) ?? quantization.overrides.get(module);
    if (override === false) {
      throw this.fail(`${module}.scales`, 'exists but config.json says this module is not quantized ("false")');
    }
    return override ?? quantization;
  }

  private entryOf(name: string): TensorEntry {
    const file = this.located.get(name);
    if (!file) {
      throw new ModelWeightsError(
        `${this.directory}: tensor "${this.config.weightPrefix}${name}" is missing from the checkpoint (is the model complete? is config.json for this checkpoint?)`,
      );
    }
    return file.entry(this.config.weightPrefix + name);
  }

  private async read(name: string): Promise<{ entry: TensorEntry; bytes: Uint8Array }> {
    const entry = this.entryOf(name);
    const bytes = await this.located.get(name)!.read(this.config.weightPrefix + name);
    this.used.add(name);
    this.bytesLoaded += bytes.byteLength;
    this.progress.advance(bytes.byteLength);
    return { entry, bytes };
  }

  private expectShape(name: string, entry: TensorEntry, shape: readonly number[]): void {
    if (entry.shape.length !== shape.length || entry.shape.some((dim, index) => dim !== shape[index])) {
      throw this.fail(
        name,
        `has shape ${JSON.stringify(entry.shape)}, config.json implies ${JSON.stringify(shape)} (does config.json belong to these weights?)`,
      );
    }
  }

  private fail(name: string, message: string): ModelWeightsError {
    const file = this.located.get(name);
    return new ModelWeightsError(
      `${file?.path ?? this.directory}: tensor "${this.config.weightPrefix}${name}" ${message}`,
    );
  }
}

function view(bytes: Uint8Array, dtype: DType): HostArray {
  switch (dtype) {
    case "f32":
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    case "u32":
      return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    case "i32":
      return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    case "f16":
    case "bf16":
      return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  }
}

/** The safetensors files of a model directory: the index's shards, or the single model.safetensors. */
async function listShards(directory: string): Promise<string[]> {
  const indexPath = join(directory, "model.safetensors.index.json");
  if (existsSync(indexPath)) {
    let weightMap: Record<string, unknown>;
    try {
      const index = JSON.parse(await readFile(indexPath, "utf8")) as { weight_map?: unknown };
      if (index.weight_map === null || typeof index.weight_map !== "object") throw new Error("weight_map is missing");
      weightMap = index.weight_map as Record<string, unknown>;
    } catch (error) {
      throw new ModelWeightsError(`${indexPath}: ${(error as Error).message}`);
    }
    const shards = [...new Set(Object.values(weightMap))];
    if (shards.some((shard) => typeof shard !== "string" || shard.includes("/") || shard.includes("\\"))) {
      throw new ModelWeightsError(`${indexPath}: weight_map names something that is not a file in this directory`);
    }
    const missing = (shards as string[]).filter((shard) => !existsSync(join(directory, shard)));
    if (missing.length > 0) {
      throw new ModelWeightsError(
        `${directory}: ${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} missing (listed in model.safetensors.index.json); download the model again`,
      );
    }
    return (shards as string[]).sort();
  }
  if (existsSync(join(directory, "model.safetensors"))) return ["model.safetensors"];
  throw new ModelWeightsError(
    `${directory}: no model.safetensors or model.safetensors.index.json (is this a model directory in the Hugging Face layout?)`,
  );
}
