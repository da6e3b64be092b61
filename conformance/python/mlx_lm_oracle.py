"""The reference side of the model parity tests: mlx-lm (PyPI) runs a model directory and reports
what it computes, so our architectures are checked against the implementation users compare with.

Usage: mlx_lm_oracle.py REQUEST.json RESULT.json
REQUEST: {"models": [{"path": DIR, "prompts": [[ids...], ...], "steps": N}, ...]}
RESULT:  {"models": [{"path": DIR, "sequences": [{"prompt_logits": [...], "tokens": [...],
          "margins": [...]}]}]}
For each prompt: the logits at the prompt's last position, then N greedy tokens (argmax, lowest id on
ties as numpy/mlx argmax does), and at each step the gap between the best and second-best logit, so a
mismatch can be told apart from a near-tie. Everything runs in the model's own dtype on MLX's CPU
device, with mlx-lm's own KV cache (RotatingKVCache on Gemma 3's sliding layers), after casting every
floating-point parameter to float32: a bf16 checkpoint's values are exact in float32, so this is mlx-lm's
math on exactly the stored weights at the precision our backends compute in (f32 activations and
accumulation). Run natively in bf16, mlx-lm rounds every activation to 8 bits of mantissa and its own
logits move by ~1% — that would test MLX's rounding, not our model code.
"""

import json
import sys

import mlx.core as mx
from pathlib import Path

from mlx_lm.utils import load_model
from mlx_lm.models.cache import make_prompt_cache


def run_prompt(model, prompt, steps):
    cache = make_prompt_cache(model)
    logits = model(mx.array(prompt)[None], cache=cache)[0, -1].astype(mx.float32)
    prompt_logits = logits.tolist()
    tokens, margins = [], []
    for _ in range(steps):
        top2 = mx.topk(logits, 2).tolist()
        token = int(mx.argmax(logits).item())
        tokens.append(token)
        margins.append(max(top2) - min(top2))
        logits = model(mx.array([[token]]), cache=cache)[0, -1].astype(mx.float32)
    return {"prompt_logits": prompt_logits, "tokens": tokens, "margins": margins}


def main():
    request_path, result_path = sys.argv[1], sys.argv[2]
    mx.set_default_device(mx.cpu)
    with open(request_path) as f:
        request = json.load(f)
    results = []
    for entry in request["models"]:
        model, _ = load_model(Path(entry["path"]))
        model.set_dtype(mx.float32)
        sequences = [run_prompt(model, prompt, entry["steps"]) for prompt in entry["prompts"]]
        results.append({"path": entry["path"], "sequences": sequences})
    with open(result_path, "w") as f:
        json.dump({"models": results}, f)


if __name__ == "__main__":
    main()
