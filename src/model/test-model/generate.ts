/**
 * Writes a complete random-weight model directory in the layout mlx-lm writes and loads: config.json,
 * safetensors weights (`model.safetensors`, or `model-0000K-of-0000N.safetensors` shards past the
 * shard size) with `model.safetensors.index.json` (mlx-lm writes the index even for one shard),
 * tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json and a README.
 * Everything follows from the options: the same options give the same bytes. The directory is built
 * beside its target and renamed into place at the end, so a failed or interrupted run leaves nothing
 * that looks like a model.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { createProgress, type Progress } from "../../progress.js";
import type { QuantizationSpec } from "../config.js";
import { chatTemplateFor, TEMPLATE_VARIANTS, type TemplateVariant } from "./chat-templates.js";
import { configJson, type ConfigTokens } from "./config-json.js";
import type { TestModelDtype } from "./encode.js";
import { visionShapeFor, weightPlan, type WeightPlan } from "./layout.js";
import { familyOf, shapeOf, type TestModelArch, type TestModelPreset } from "./presets.js";
import { SafetensorsStreamWriter } from "./safetensors-stream.js";
import { makeTestTokenizer, type TestTokenizerFiles } from "./tokenizer.js";
import { ChunkPool } from "./parallel.js";
import { outputTensors, tensorChunks, type WeightFormat } from "./weights.js";

/** mlx-lm's default shard size (MAX_FILE_SIZE_GB = 5, in GiB). */
export const DEFAULT_MAX_SHARD_BYTES = 5 * 2 ** 30;
/** Below this a progress bar would only flicker. */
const PROGRESS_MIN_BYTES = 256 * 2 ** 20;

export interface GenerateTestModelOptions {
  arch: TestModelArch;
  /** A chat template other than the family's own, over its tokenizer (`qwen3_coder`: qwen3 only). */
  template?: TemplateVariant;
  /** The directory to create; it must not exist or be empty. */
  out: string;
  preset?: TestModelPreset;
  dtype?: TestModelDtype;
  /** MLX affine quantization, as `mlx_lm.convert -q --q-bits --q-group-size` would apply it. */
  quantization?: QuantizationSpec | null;
  seed?: number;
  /** A new shard starts before a tensor that would take the current one past this many bytes. */
  maxShardBytes?: number;
  /** Where to draw a progress bar, for models big enough to need one. */
  progressStream?: NodeJS.WriteStream;
}

export interface GeneratedTestModel {
  dir: string;
  /** Every file written, relative to `dir`, sorted. */
  files: string[];
  shards: string[];
  /** Bytes of tensor data over all shards (the index's `total_size`). */
  totalBytes: number;
  /** Parameters as mlx-lm counts them (quantized weights count their unpacked values). */
  totalParameters: number;
  config: Record<string, unknown>;
}

/** A problem with the target directory, worded for the command line. */
export class TestModelError extends Error {
  override name = "TestModelError";
}

interface Shard {
  file: string;
  plans: WeightPlan[];
}

function planShards(plans: WeightPlan[], format: WeightFormat, maxShardBytes: number): Shard[] {
  // mlx-lm's make_shards: in order, a new shard when the next tensor would not fit (one too big for
  // any shard gets its own). Ours moves a quantized module's weight, scales and biases together.
  const groups: WeightPlan[][] = [];
  let size = 0;
  for (const plan of plans) {
    const bytes = outputTensors(plan, format).reduce((sum, tensor) => sum + tensor.byteLength, 0);
    if (groups.length === 0 || size + bytes > maxShardBytes) {
      groups.push([]);
      size = 0;
    }
    groups.at(-1)!.push(plan);
    size += bytes;
  }
  const count = String(groups.length).padStart(5, "0");
  return groups.map((group, index) => ({
    file:
      groups.length === 1 ? "model.safetensors" : `model-${String(index + 1).padStart(5, "0")}-of-${count}.safetensors`,
    plans: group,
  }));
}

function configTokens(tokenizer: TestTokenizerFiles): ConfigTokens {
  const { bos_token_id: bosTokenId, eos_token_id: eosTokenId, pad_token_id: padTokenId } = tokenizer.generationConfig;
  const added = (tokenizer.tokenizer.added_tokens ?? []) as { id: number; content: string }[];
  const idOf = (content: string) => added.find((token) => token.content === content)?.id;
  return {
    bosTokenId,
    eosTokenId,
    ...(padTokenId !== undefined ? { padTokenId } : {}),
    imageTokens: { boi: idOf("<start_of_image>"), eoi: idOf("<end_of_image>"), image: idOf("<image_soft_token>") },
  };
}

async function ensureTargetIsFree(out: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(out);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    if (code === "ENOTDIR") throw new TestModelError(`--out ${out} is a file, not a directory`);
    throw error;
  }
  if (entries.length > 0) throw new TestModelError(`--out ${out} is not empty; give a new or empty directory`);
}

export async function generateTestModel(options: GenerateTestModelOptions): Promise<GeneratedTestModel> {
  const { arch, preset = "tiny", dtype = "bf16", quantization = null, seed = 0 } = options;
  const dir = resolve(options.out);
  await ensureTargetIsFree(dir);
  const shape = shapeOf(arch, preset);
  const vision = arch === "gemma3" ? visionShapeFor(shape, preset === "tiny") : null;
  const { template } = options;
  if (template !== undefined && TEMPLATE_VARIANTS[template].family !== familyOf(arch)) {
    throw new TestModelError(`--template ${template} needs --arch ${TEMPLATE_VARIANTS[template].family}`);
  }
  const tokenizer = makeTestTokenizer(familyOf(arch), shape.vocabSize);
  if (template !== undefined) tokenizer.tokenizerConfig.chat_template = chatTemplateFor(familyOf(arch), template);
  const format: WeightFormat = { dtype, quantization };
  const specialIds = ((tokenizer.tokenizer.added_tokens ?? []) as { id: number }[]).map((token) => token.id);
  const plans = weightPlan(arch, shape, vision, specialIds);
  const shards = planShards(plans, format, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
  const config = configJson({ arch, shape, dtype, quantization, vision, tokens: configTokens(tokenizer) });

  const totalBytes = plans
    .flatMap((plan) => outputTensors(plan, format))
    .reduce((sum, tensor) => sum + tensor.byteLength, 0);
  const totalParameters = plans.reduce((sum, plan) => sum + plan.shape.reduce((product, dim) => product * dim, 1), 0);
  const progress =
    options.progressStream && totalBytes >= PROGRESS_MIN_BYTES
      ? createProgress({ label: `${arch} ${preset}`, totalBytes, stream: options.progressStream })
      : null;

  await mkdir(dirname(dir), { recursive: true });
  const staging = join(dirname(dir), `.${basename(dir)}.partial-${randomBytes(4).toString("hex")}`);
  await mkdir(staging);
  const pool = ChunkPool.create();
  try {
    const weightMap: Record<string, string> = {};
    for (const shard of shards) {
      await writeShard(join(staging, shard.file), shard.plans, format, seed, progress, pool);
      for (const plan of shard.plans)
        for (const tensor of outputTensors(plan, format)) weightMap[tensor.name] = shard.file;
    }
    progress?.done();
    const index = {
      metadata: { total_size: totalBytes, total_parameters: totalParameters },
      weight_map: Object.fromEntries(
        Object.keys(weightMap)
          .sort()
          .map((name) => [name, weightMap[name]!]),
      ),
    };
    const json = (value: unknown, indent: number) => `${JSON.stringify(value, null, indent)}\n`;
    const files: Record<string, string> = {
      "config.json": json(config, 4),
      "model.safetensors.index.json": json(index, 4),
      "tokenizer.json": json(tokenizer.tokenizer, 2),
      "tokenizer_config.json": json(tokenizer.tokenizerConfig, 2),
      "generation_config.json": json(tokenizer.generationConfig, 2),
      "README.md": readme({ arch, template, preset, dtype, quantization, seed, reproduces: shape.reproduces }),
    };
    if (tokenizer.specialTokensMap) files["special_tokens_map.json"] = json(tokenizer.specialTokensMap, 2);
    for (const [name, text] of Object.entries(files)) await writeFile(join(staging, name), text);
    // rename() replaces an empty directory at the target, and fails if something filled it meanwhile.
    await rename(staging, dir);
    return {
      dir,
      files: [...Object.keys(files), ...shards.map((shard) => shard.file)].sort(),
      shards: shards.map((shard) => shard.file),
      totalBytes,
      totalParameters,
      config,
    };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  } finally {
    await pool?.close();
  }
}

async function writeShard(
  path: string,
  plans: WeightPlan[],
  format: WeightFormat,
  seed: number,
  progress: Progress | null,
  pool: ChunkPool | null,
): Promise<void> {
  const writer = await SafetensorsStreamWriter.create(
    path,
    plans.flatMap((plan) => outputTensors(plan, format)),
    { format: "mlx" }, // what mlx-lm's save_model stamps on its shards
  );
  try {
    for (const plan of plans) {
      const outputs = outputTensors(plan, format);
      for await (const parts of pool ? pool.chunks(plan, format, seed) : tensorChunks(plan, format, seed)) {
        for (let i = 0; i < parts.length; i++) {
          await writer.append(outputs[i]!.name, parts[i]!);
          progress?.advance(parts[i]!.byteLength);
        }
      }
    }
  } catch (error) {
    await writer.abort();
    throw error;
  }
  await writer.commit();
}

function readme(options: {
  arch: TestModelArch;
  template: TemplateVariant | undefined;
  preset: TestModelPreset;
  dtype: TestModelDtype;
  quantization: QuantizationSpec | null;
  seed: number;
  reproduces: string;
}): string {
  const { arch, template, preset, dtype, quantization, seed, reproduces } = options;
  const flags = [
    `--arch ${arch}`,
    ...(template ? [`--template ${template}`] : []),
    `--preset ${preset}`,
    `--dtype ${dtype}`,
  ];
  if (quantization) flags.push(`--bits ${quantization.bits}`, `--group-size ${quantization.groupSize}`);
  flags.push(`--seed ${seed}`);
  return `# Random-weight ${arch} test model (${preset})

Generated by \`agent-memory make-test-model ${flags.join(" ")}\`; the same command writes the same bytes.

**The weights are random: this model knows nothing and writes gibberish.** It exists to test model
loading and inference against mlx-lm with files in the real layout. Shape: ${reproduces}.

The weights have structure so that greedy decoding is decisive: each token's embedding dominates the
residual stream, and an untied LM head is a permutation of the embedding rows, so the best logit
stands far clear of the second and implementations that round differently still agree on it.
`;
}
