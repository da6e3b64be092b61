import { parseArgs } from "node:util";
import { formatBytes } from "../../progress.js";
import { TEST_MODEL_DTYPES, type TestModelDtype } from "../../model/test-model/encode.js";
import { TEMPLATE_VARIANTS, type TemplateVariant } from "../../model/test-model/chat-templates.js";
import { DEFAULT_MAX_SHARD_BYTES, generateTestModel } from "../../model/test-model/generate.js";
import {
  TEST_MODEL_ARCHS,
  TEST_MODEL_PRESETS,
  type TestModelArch,
  type TestModelPreset,
} from "../../model/test-model/presets.js";
import { UsageError } from "../args.js";

const MIB = 2 ** 20;

const HELP = `Usage: agent-memory make-test-model --arch ARCH --out DIR [options]

Writes a random-weight model directory in the layout mlx-lm loads (config.json, safetensors,
tokenizer files, generation_config.json), for tests and benchmarks. The same options write the
same bytes.

  --arch ${TEST_MODEL_ARCHS.join("|")}
                     model family; gemma3 is the multimodal layout of mlx-community's
                     gemma-3-*-it checkpoints, gemma3_text the text-only one (gemma-3-1b-it)
  --template qwen3_coder
                     a chat template other than the family's own, over its tokenizer:
                     qwen3_coder (with --arch qwen3) writes tool calls in Qwen3-Coder's
                     XML style (<function=NAME><parameter=KEY>); default: the family's own
  --out DIR          directory to create (must not exist, or be empty)
  --preset ${TEST_MODEL_PRESETS.join("|")}
                     tiny: a few MB for tests; the others the shapes of real checkpoints
                     (default tiny)
  --dtype ${TEST_MODEL_DTYPES.join("|")}  weight dtype (default bf16)
  --bits 4|8         quantize as mlx_lm.convert -q does (default: not quantized)
  --group-size 32|64|128
                     quantization group size (default 64, needs --bits)
  --seed N           random seed, an integer >= 0 (default 0)
  --max-shard-mb N   start a new safetensors shard past N MiB (default ${DEFAULT_MAX_SHARD_BYTES / MIB}, mlx-lm's 5 GiB)
  --help, -h         show this help`;

const OPTIONS = {
  arch: { type: "string" },
  template: { type: "string" },
  out: { type: "string" },
  preset: { type: "string" },
  dtype: { type: "string" },
  bits: { type: "string" },
  "group-size": { type: "string" },
  seed: { type: "string" },
  "max-shard-mb": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

function usage(message: string): UsageError {
  return new UsageError(`make-test-model: ${message}; see 'agent-memory make-test-model --help'`);
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[], fallback?: T): T {
  if (value === undefined) {
    if (fallback !== undefined) return fallback;
    throw usage(`--${flag} is required (one of ${allowed.join(", ")})`);
  }
  if (!(allowed as readonly string[]).includes(value)) {
    throw usage(`--${flag} ${JSON.stringify(value)} is not one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function integer(flag: string, value: string, minimum: number, what: string): number {
  const parsed = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(parsed) || parsed < minimum)
    throw usage(`--${flag} ${JSON.stringify(value)} is not ${what}`);
  return parsed;
}

export async function runMakeTestModel(args: string[]): Promise<number> {
  let values: Partial<Record<keyof typeof OPTIONS, string | boolean>>;
  try {
    ({ values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    const { code, message } = error as Error & { code?: string };
    const quoted = message.match(/'(-[^' ]*)/)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") throw usage(`unknown option ${quoted ?? ""}`.trim());
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") throw usage(`option ${quoted ?? ""} needs a value`);
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      throw usage(`unexpected argument ${message.match(/'([^']*)'/)?.[1] ?? ""}`.trim());
    }
    throw usage(message);
  }
  if (values.help === true) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const text = (name: keyof typeof OPTIONS) => values[name] as string | undefined;

  const arch = oneOf<TestModelArch>("arch", text("arch"), TEST_MODEL_ARCHS);
  const template =
    text("template") === undefined
      ? undefined
      : oneOf<TemplateVariant>("template", text("template"), Object.keys(TEMPLATE_VARIANTS) as TemplateVariant[]);
  const out = text("out");
  if (out === undefined || out === "") throw usage("--out DIR is required");
  const preset = oneOf<TestModelPreset>("preset", text("preset"), TEST_MODEL_PRESETS, "tiny");
  const dtype = oneOf<TestModelDtype>("dtype", text("dtype"), TEST_MODEL_DTYPES, "bf16");
  const bits = text("bits") === undefined ? null : Number(oneOf("bits", text("bits"), ["4", "8"]));
  const groupSizeText = text("group-size");
  if (groupSizeText !== undefined && bits === null) throw usage("--group-size needs --bits 4|8");
  const groupSize = Number(oneOf("group-size", groupSizeText, ["32", "64", "128"], "64"));
  const seed = text("seed") === undefined ? 0 : integer("seed", text("seed")!, 0, "an integer >= 0");
  const maxShardMb = text("max-shard-mb");
  const maxShardBytes =
    maxShardMb === undefined
      ? DEFAULT_MAX_SHARD_BYTES
      : integer("max-shard-mb", maxShardMb, 1, "a whole number of MiB >= 1") * MIB;

  const model = await generateTestModel({
    arch,
    template,
    out,
    preset,
    dtype,
    quantization: bits === null ? null : { bits: bits as 4 | 8, groupSize: groupSize as 32 | 64 | 128 },
    seed,
    maxShardBytes,
    progressStream: process.stderr,
  });
  const form = bits === null ? dtype : `${bits}-bit (group ${groupSize}, ${dtype} scales)`;
  process.stdout.write(
    `wrote ${model.dir}: ${arch}${template ? ` (${template} template)` : ""} ${preset}, ${form}, ${model.shards.length} shard(s), ${formatBytes(model.totalBytes)} of weights\n`,
  );
  return 0;
}
