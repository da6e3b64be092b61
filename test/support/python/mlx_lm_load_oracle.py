"""Independent oracle for `agent-memory make-test-model`: mlx-lm itself loads and runs what we wrote.

  generate STEPS OUT DIR...  for each DIR: mlx_lm.load (strict: every tensor present and of the right
                             shape), a 64-token prompt from the model's own tokenizer, STEPS greedy
                             tokens in the model's dtype and again with every float parameter cast to
                             float32 (quantized layers then compute in float32); writes to OUT a JSON list with
                             the tokens of both runs and, per step, the gap between the two best logits
                             divided by the logits' standard deviation (a file, not stdout: the
                             tokenizers library prints its warnings to stdout)
  convert SRC DST BITS GROUP [SRC DST BITS GROUP ...]
                             mlx_lm.convert SRC (a float model) into DST, quantized as `mlx_lm.convert -q`
                             does
  cast IN OUT                reads float32 tensor "w" from IN, writes MLX's astype of it to OUT as
                             "bf16" and "f16"
"""
import json
import sys

import mlx.core as mx
import numpy as np
from mlx.utils import tree_map
from mlx_lm import convert, load
from mlx_lm.generate import generate_step

PROMPT_TOKENS = 64
TEXT = ("The user asked the assistant about the weather in Paris, and the assistant called a tool to find out. "
        "Memory is the difference between a tool and a colleague. ")


def greedy(model, prompt, steps):
    tokens, gaps, stds, finite = [], [], [], True
    sampler = lambda logprobs: mx.argmax(logprobs, axis=-1)  # noqa: E731
    for token, logprobs in generate_step(mx.array(prompt), model, max_tokens=steps, sampler=sampler):
        values = np.array(logprobs.astype(mx.float32)).reshape(-1)
        finite = finite and bool(np.isfinite(values).all())
        top2 = np.sort(values)[-2:]
        tokens.append(int(token))
        gaps.append(float(top2[1] - top2[0]) / float(values.std()))
        stds.append(float(values.std()))
    return tokens, gaps, stds, finite


def run_generate(steps, out, directories):
    results = []
    for directory in directories:
        model, tokenizer, config = load(directory, return_config=True)
        ids = []
        while len(ids) < PROMPT_TOKENS:
            ids = tokenizer.encode(TEXT * (1 + len(ids) // 8 + 1))
        prompt = ids[:PROMPT_TOKENS]
        tokens, gaps, stds, finite = greedy(model, prompt, steps)
        model.update(tree_map(lambda x: x.astype(mx.float32) if mx.issubdtype(x.dtype, mx.floating) else x,
                              model.parameters()))
        tokens_f32, _, _, finite_f32 = greedy(model, prompt, steps)
        results.append({
            "dir": directory,
            "model_type": config["model_type"],
            "vocab_size": int(model.args.vocab_size) if hasattr(model.args, "vocab_size") else None,
            "prompt": prompt,
            "tokens": tokens,
            "tokens_f32": tokens_f32,
            "finite": finite and finite_f32,
            "gap_over_std": gaps,
            "logit_std": stds,
        })
    with open(out, "w") as handle:
        json.dump(results, handle)


def main() -> None:
    command = sys.argv[1]
    if command == "generate":
        run_generate(int(sys.argv[2]), sys.argv[3], sys.argv[4:])
    elif command == "convert":
        jobs = sys.argv[2:]
        for i in range(0, len(jobs), 4):
            source, target, bits, group_size = jobs[i:i + 4]
            convert(source, target, quantize=True, q_bits=int(bits), q_group_size=int(group_size))
    elif command == "cast":
        w = mx.load(sys.argv[2])["w"]
        mx.save_safetensors(sys.argv[3], {"bf16": w.astype(mx.bfloat16), "f16": w.astype(mx.float16)})
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
