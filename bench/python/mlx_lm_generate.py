"""The baseline of bench/mlx-vs-mlx-lm.ts: mlx-lm's own generation loop on a model directory, timed.

Usage: mlx_lm_generate.py REQUEST.json RESULT.json
REQUEST: {"path": DIR, "prompt": [ids...], "generate": N, "warmup": [ids...],
          "repeats": {"model": R, "float32": R}}   (the dtypes to run, and how often each)
RESULT:  {"mlx": VERSION, "mlx_lm": VERSION, "device": TEXT,
          "runs": {"model": [{"prefill_seconds", "decode_seconds", "tokens"}, ...], "float32": [...]}}

The loop is mlx_lm.generate.generate_step, the one stream_generate and generate drive (they add
detokenization and the end-of-sequence check, which a random-weight model would trip at random), with
mlx-lm's greedy sampler and its own KV cache, prefill chunking and async_eval pipelining. Timing is
stream_generate's: prefill from the start to the first token on the host, decode from the first token to
the last. "model" runs in the checkpoint's dtype (bf16 scales and activations, as users run it);
"float32" casts every floating-point parameter to float32 first, which is what our backends compute in
(f32 activations), so the two rows separate our code's cost from the choice of precision.
"""

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.sample_utils import make_sampler
from mlx_lm.utils import load_model


def timed_generation(model, prompt, generate):
    prompt = mx.array(prompt)
    sampler = make_sampler(temp=0.0)
    tokens, started, first = [], time.perf_counter(), None
    for token, _ in generate_step(prompt, model, max_tokens=generate, sampler=sampler):
        tokens.append(int(token))
        if first is None:
            first = time.perf_counter()
    finished = time.perf_counter()
    # generate_step has already queued one step past the last token; let it finish before the next run.
    mx.synchronize()
    return {"prefill_seconds": first - started, "decode_seconds": finished - first, "tokens": tokens}


def main():
    request_path, result_path = sys.argv[1], sys.argv[2]
    with open(request_path) as f:
        request = json.load(f)
    runs = {}
    for dtype, repeats in request["repeats"].items():
        model, _ = load_model(Path(request["path"]))
        if dtype == "float32":
            model.set_dtype(mx.float32)
        elif dtype != "model":
            raise ValueError(f"unknown dtype {dtype!r}: model or float32")
        mx.eval(model.parameters())
        timed_generation(model, request["warmup"], 2)
        runs[dtype] = [
            timed_generation(model, request["prompt"], request["generate"]) for _ in range(repeats)
        ]
        print(f"mlx-lm ({dtype}): {len(runs[dtype])} runs done", file=sys.stderr, flush=True)
        del model
        mx.clear_cache()
    device = str(mx.default_device())
    result = {"mlx": mx.__version__, "mlx_lm": version("mlx-lm"), "device": device, "runs": runs}
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
