/**
 * `agent-memory make-test-model`, run as users run it (the built CLI), checked against our config
 * reader, against shapes derived here from config.json alone, and against mlx-lm — which must load
 * every generated directory strictly, generate from it decisively, and, quantizing our float model
 * with `mlx_lm.convert`, produce exactly the bytes of our quantized one.
 */
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { readModelConfig, type ModelConfig } from "../../src/model/config.js";
import { SafetensorsFile, type TensorEntry } from "../../src/model/safetensors.js";
import { generateTestModel } from "../../src/model/test-model/generate.js";
import { REPO_ROOT, runCli, scratchDir } from "../support/cli.js";

const run = promisify(execFile);
const ORACLE = join(REPO_ROOT, "test/support/python/mlx_lm_load_oracle.py");
const ARCHS = ["llama", "qwen2", "qwen3", "gemma3", "gemma3_text"] as const;
const STEPS = 32;

async function make(dir: string, ...flags: string[]): Promise<string> {
  const result = await runCli(["make-test-model", "--out", dir, ...flags]);
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(/^wrote .+\n$/);
  return dir;
}

interface Stored extends TensorEntry {
  file: string;
  bytes: Uint8Array;
}

async function readTensors(dir: string): Promise<Map<string, Stored>> {
  const tensors = new Map<string, Stored>();
  for (const file of readdirSync(dir).filter((name) => name.endsWith(".safetensors"))) {
    const handle = await SafetensorsFile.open(join(dir, file));
    try {
      for (const entry of handle.tensors.values()) {
        tensors.set(entry.name, { ...entry, file, bytes: await handle.read(entry.name) });
      }
    } finally {
      await handle.close();
    }
  }
  return tensors;
}

/** Every language-model tensor config.json implies, with its shape and dtype, worked out here independently. */
function expectedTensors(config: ModelConfig, dtype: string): Map<string, { shape: number[]; dtype: string }> {
  const { hiddenSize: d, intermediateSize: ff, heads, kvHeads, headDim, vocabSize, weightPrefix: prefix } = config;
  const gemma = config.architecture === "gemma3";
  const expected = new Map<string, { shape: number[]; dtype: string }>();
  const plain = (name: string, shape: number[]) => expected.set(prefix + name, { shape, dtype });
  const matrix = (name: string, rows: number, cols: number) => {
    const q = config.quantization;
    if (!q) return plain(`${name}.weight`, [rows, cols]);
    expected.set(`${prefix}${name}.weight`, { shape: [rows, (cols * q.bits) / 32], dtype: "U32" });
    plain(`${name}.scales`, [rows, cols / q.groupSize]);
    plain(`${name}.biases`, [rows, cols / q.groupSize]);
  };
  matrix("model.embed_tokens", vocabSize, d);
  for (let layer = 0; layer < config.layers; layer++) {
    const at = `model.layers.${layer}`;
    matrix(`${at}.self_attn.q_proj`, heads * headDim, d);
    matrix(`${at}.self_attn.k_proj`, kvHeads * headDim, d);
    matrix(`${at}.self_attn.v_proj`, kvHeads * headDim, d);
    matrix(`${at}.self_attn.o_proj`, d, heads * headDim);
    if (config.attentionBias) {
      plain(`${at}.self_attn.q_proj.bias`, [heads * headDim]);
      plain(`${at}.self_attn.k_proj.bias`, [kvHeads * headDim]);
      plain(`${at}.self_attn.v_proj.bias`, [kvHeads * headDim]);
    }
    if (gemma || config.architecture === "qwen3") {
      plain(`${at}.self_attn.q_norm.weight`, [headDim]);
      plain(`${at}.self_attn.k_norm.weight`, [headDim]);
    }
    matrix(`${at}.mlp.gate_proj`, ff, d);
    matrix(`${at}.mlp.up_proj`, ff, d);
    matrix(`${at}.mlp.down_proj`, d, ff);
    const norms = ["input_layernorm", "post_attention_layernorm"];
    if (gemma) norms.push("pre_feedforward_layernorm", "post_feedforward_layernorm");
    for (const norm of norms) plain(`${at}.${norm}.weight`, [d]);
  }
  plain("model.norm.weight", [d]);
  if (!config.tieWordEmbeddings) matrix("lm_head", vocabSize, d);
  return expected;
}

const SAFETENSORS_OF = { bfloat16: "BF16", float16: "F16", float32: "F32" } as Record<string, string>;

describe("make-test-model writes the model directory config.json describes", () => {
  const root = scratchDir("make-test-model-");
  const variants = [
    ...ARCHS.map((arch) => ({ name: `${arch}-bf16`, arch, flags: [] as string[] })),
    ...ARCHS.map((arch) => ({ name: `${arch}-q4`, arch, flags: ["--bits", "4"] })),
    { name: "qwen2-f16-q8g32", arch: "qwen2", flags: ["--dtype", "f16", "--bits", "8", "--group-size", "32"] },
    { name: "gemma3-f32-q4g128", arch: "gemma3", flags: ["--dtype", "f32", "--bits", "4", "--group-size", "128"] },
    { name: "gemma3_text-f16", arch: "gemma3_text", flags: ["--dtype", "f16"] },
    { name: "llama-sharded", arch: "llama", flags: ["--max-shard-mb", "1"] },
  ];
  const dirOf = (name: string) => join(root, name);

  beforeAll(async () => {
    for (const { name, arch, flags } of variants) await make(dirOf(name), "--arch", arch, ...flags);
  }, 60_000);

  for (const { name, arch } of variants) {
    it(`${name}: every tensor matches config.json (name, shape, dtype), nothing missing or extra`, async () => {
      const dir = dirOf(name);
      const config = await readModelConfig(dir);
      const raw = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      const dtype = SAFETENSORS_OF[raw.torch_dtype as string]!;
      expect(config.architecture).toBe(arch.startsWith("gemma3") ? "gemma3" : arch);
      expect(config.weightPrefix).toBe(arch === "gemma3" ? "language_model." : "");
      const tensors = await readTensors(dir);
      const expected = expectedTensors(config, dtype);
      const language = [...tensors.values()].filter(
        (tensor) => !/^(vision_tower|multi_modal_projector)\./.test(tensor.name),
      );
      expect(Object.fromEntries(language.map((t) => [t.name, { shape: t.shape, dtype: t.dtype }]))).toEqual(
        Object.fromEntries(expected),
      );
      // The multimodal layout carries a (small) vision tower that a text-only loader must skip.
      const vision = [...tensors.keys()].filter((key) => /^(vision_tower|multi_modal_projector)\./.test(key));
      expect(vision.length > 0).toBe(arch === "gemma3");
    });
  }

  it("tiny shapes: GQA, head_dim, Gemma's sliding window crossed by a 64-token prompt, group sizes all fit", async () => {
    const llama = await readModelConfig(dirOf("llama-bf16"));
    expect(llama).toMatchObject({ hiddenSize: 128, heads: 4, kvHeads: 2, headDim: 32, tieWordEmbeddings: false });
    expect(llama.ropeScaling).toMatchObject({ kind: "llama3", factor: 32 });
    const gemma = await readModelConfig(dirOf("gemma3-q4"));
    expect(gemma).toMatchObject({ layers: 6, headDim: 64, tieWordEmbeddings: true });
    expect(gemma.gemma).toMatchObject({ slidingWindow: 16, slidingWindowPattern: 6 });
    expect(gemma.quantization).toMatchObject({ bits: 4, groupSize: 64 });
    for (const dim of [llama.hiddenSize, llama.intermediateSize, gemma.heads * gemma.headDim])
      expect(dim % 128).toBe(0);
  });

  it("a sharded model's index maps every tensor to the shard that holds it", async () => {
    const dir = dirOf("llama-sharded");
    const shards = readdirSync(dir).filter((name) => name.endsWith(".safetensors"));
    expect(shards.length).toBeGreaterThan(1);
    shards.forEach((file, i) =>
      expect(file).toBe(
        `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`,
      ),
    );
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8")) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    const tensors = await readTensors(dir);
    expect(index.weight_map).toEqual(Object.fromEntries([...tensors.values()].map((t) => [t.name, t.file])));
    expect(index.metadata.total_size).toBe([...tensors.values()].reduce((sum, t) => sum + t.byteLength, 0));
    // Same tensors, same bytes as the unsharded model of the same seed.
    const whole = await readTensors(dirOf("llama-bf16"));
    for (const [name, tensor] of tensors) expect(Buffer.from(tensor.bytes).equals(whole.get(name)!.bytes)).toBe(true);
  });

  it("the same seed writes the same bytes; another seed other weights", async () => {
    const again = await make(join(root, "again"), "--arch", "gemma3", "--bits", "4");
    const reseeded = await make(join(root, "reseeded"), "--arch", "gemma3", "--bits", "4", "--seed", "7");
    const files = readdirSync(dirOf("gemma3-q4")).sort();
    expect(readdirSync(again).sort()).toEqual(files);
    for (const file of files) {
      expect(readFileSync(join(again, file)).equals(readFileSync(join(dirOf("gemma3-q4"), file))), file).toBe(true);
    }
    expect(
      readFileSync(join(reseeded, "model.safetensors")).equals(readFileSync(join(again, "model.safetensors"))),
    ).toBe(false);
    expect(readFileSync(join(reseeded, "config.json"), "utf8")).toBe(readFileSync(join(again, "config.json"), "utf8"));
  });

  it("the CLI's worker threads write the bytes that one thread writes in-process", async () => {
    // The built CLI generates chunks on worker threads (src/model/test-model/parallel.ts); from the
    // TypeScript sources, as here, generateTestModel stays on this thread.
    const inProcess = join(root, "in-process-gemma3-q4");
    await generateTestModel({ arch: "gemma3", out: inProcess, quantization: { bits: 4, groupSize: 64 } });
    const files = readdirSync(dirOf("gemma3-q4")).sort();
    expect(readdirSync(inProcess).sort()).toEqual(files);
    for (const file of files) {
      expect(readFileSync(join(inProcess, file)).equals(readFileSync(join(dirOf("gemma3-q4"), file))), file).toBe(true);
    }
  });

  it("mlx-lm loads every directory strictly and generates decisively from it", async () => {
    const dirs = variants.map(({ name }) => dirOf(name));
    const out = join(root, "generations.json");
    await run("python3", [ORACLE, "generate", String(STEPS), out, ...dirs], { maxBuffer: 64 * 2 ** 20 });
    const results = JSON.parse(readFileSync(out, "utf8")) as {
      dir: string;
      tokens: number[];
      tokens_f32: number[];
      finite: boolean;
      gap_over_std: number[];
    }[];
    expect(results.map((result) => result.dir)).toEqual(dirs);
    for (const result of results) {
      const config = await readModelConfig(result.dir);
      const tokenizer = JSON.parse(readFileSync(join(result.dir, "tokenizer.json"), "utf8")) as {
        added_tokens: { id: number }[];
      };
      const special = new Set(tokenizer.added_tokens.map((token) => token.id));
      expect(result.finite, result.dir).toBe(true);
      expect(result.tokens).toHaveLength(STEPS);
      expect(result.tokens.every((token) => token >= 0 && token < config.vocabSize)).toBe(true);
      // Decisive: the best logit clears the second by over two standard deviations of all logits, so
      // computing in float32 instead of the model's dtype picks the same tokens.
      expect(Math.min(...result.gap_over_std), result.dir).toBeGreaterThan(2);
      expect(result.tokens_f32, result.dir).toEqual(result.tokens);
      if (!config.tieWordEmbeddings) {
        // An untied head walks through distinct ordinary tokens and never lands on a special one.
        expect(new Set(result.tokens).size, result.dir).toBeGreaterThan(STEPS / 2);
        expect(
          result.tokens.filter((token) => special.has(token)),
          result.dir,
        ).toEqual([]);
      }
    }
  }, 120_000);
});

describe("make-test-model quantizes exactly as mlx_lm.convert does", () => {
  const cases = [
    { arch: "llama", dtype: "bf16", bits: 4, groupSize: 64 },
    { arch: "qwen2", dtype: "f16", bits: 8, groupSize: 32 },
    { arch: "gemma3", dtype: "bf16", bits: 4, groupSize: 128 },
    { arch: "qwen3", dtype: "f32", bits: 4, groupSize: 32 },
  ];

  it("the same tensors, byte for byte, and the same quantization in config.json", async () => {
    const root = scratchDir("make-test-model-convert-");
    const jobs: string[] = [];
    for (const [i, { arch, dtype, bits, groupSize }] of cases.entries()) {
      const common = ["--arch", arch, "--dtype", dtype, "--seed", String(100 + i)];
      await make(join(root, `${i}-float`), ...common);
      await make(join(root, `${i}-ours`), ...common, "--bits", String(bits), "--group-size", String(groupSize));
      jobs.push(join(root, `${i}-float`), join(root, `${i}-mlx`), String(bits), String(groupSize));
    }
    await run("python3", [ORACLE, "convert", ...jobs], { maxBuffer: 64 * 2 ** 20 });
    for (const [i, { arch }] of cases.entries()) {
      const ours = await readTensors(join(root, `${i}-ours`));
      const theirs = await readTensors(join(root, `${i}-mlx`));
      expect(theirs.size).toBeGreaterThan(0);
      for (const [name, tensor] of theirs) {
        const mine = ours.get(name);
        expect(mine, `${arch}: ${name}`).toBeDefined();
        expect([mine!.dtype, mine!.shape], `${arch}: ${name}`).toEqual([tensor.dtype, tensor.shape]);
        expect(Buffer.from(mine!.bytes).equals(tensor.bytes), `${arch}: ${name} bytes`).toBe(true);
      }
      // mlx-lm drops the vision tower when it converts; everything else must be there on both sides.
      const onlyOurs = [...ours.keys()].filter((name) => !theirs.has(name));
      expect(
        onlyOurs.every((name) => /^(vision_tower|multi_modal_projector)\./.test(name)),
        arch,
      ).toBe(true);
      const quantization = (dir: string) =>
        (JSON.parse(readFileSync(join(root, dir, "config.json"), "utf8")) as Record<string, unknown>).quantization;
      expect(quantization(`${i}-ours`)).toEqual(quantization(`${i}-mlx`));
    }
  }, 120_000);
});

describe("make-test-model refuses bad command lines with one line", () => {
  const cases: [string[], RegExp][] = [
    [["--out", "x"], /--arch is required \(one of llama, qwen2, qwen3, gemma3, gemma3_text\)/],
    [["--arch", "mistral", "--out", "x"], /--arch "mistral" is not one of llama, qwen2, qwen3, gemma3, gemma3_text/],
    [["--arch", "llama"], /--out DIR is required/],
    [["--arch", "llama", "--out", "x", "--bits", "3"], /--bits "3" is not one of 4, 8/],
    [
      ["--arch", "llama", "--out", "x", "--bits", "4", "--group-size", "48"],
      /--group-size "48" is not one of 32, 64, 128/,
    ],
    [["--arch", "llama", "--out", "x", "--group-size", "32"], /--group-size needs --bits 4\|8/],
    [["--arch", "llama", "--out", "x", "--dtype", "fp8"], /--dtype "fp8" is not one of bf16, f16, f32/],
    [["--arch", "llama", "--out", "x", "--preset", "3b"], /--preset "3b" is not one of tiny, 1b, 8b, 12b/],
    [["--arch", "llama", "--out", "x", "--seed=-1"], /--seed "-1" is not an integer >= 0/],
    [["--arch", "llama", "--out", "x", "--seed", "1e3"], /--seed "1e3" is not an integer >= 0/],
    [["--arch", "llama", "--out", "x", "--max-shard-mb", "0"], /--max-shard-mb "0" is not a whole number of MiB >= 1/],
    [["--arch", "llama", "--out", "x", "--layers", "3"], /unknown option --layers/],
  ];
  for (const [args, message] of cases) {
    it(`${args.join(" ")} → exit 2`, async () => {
      const result = await runCli(["make-test-model", ...args]);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/^agent-memory: make-test-model: [^\n]+\n$/);
      expect(result.stderr).toMatch(message);
    });
  }

  it("a non-empty --out directory → exit 1, nothing written", async () => {
    const dir = scratchDir();
    mkdirSync(join(dir, "model"));
    writeFileSync(join(dir, "model", "keep.txt"), "mine");
    const result = await runCli(["make-test-model", "--arch", "llama", "--out", join(dir, "model")]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `agent-memory: --out ${join(dir, "model")} is not empty; give a new or empty directory\n`,
    );
    expect(readdirSync(join(dir, "model"))).toEqual(["keep.txt"]);
    expect(readdirSync(dir)).toEqual(["model"]);
  });

  it("--help lists every flag", async () => {
    const result = await runCli(["make-test-model", "--help"]);
    expect(result.code).toBe(0);
    for (const flag of [
      "--arch",
      "--out",
      "--preset",
      "--dtype",
      "--bits",
      "--group-size",
      "--seed",
      "--max-shard-mb",
    ]) {
      expect(result.stdout).toContain(flag);
    }
  });
});
