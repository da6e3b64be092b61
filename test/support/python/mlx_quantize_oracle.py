"""Independent oracle for our MLX affine quantizer: MLX itself.

  quantize IN OUT GROUP_SIZE BITS   reads tensor "w" (float32) from IN, writes mx.quantize's
                                    "weight", "scales", "biases" to OUT (safetensors)
"""
import sys

import mlx.core as mx


def main() -> None:
    _, command, source, target, group_size, bits = sys.argv
    assert command == "quantize"
    w = mx.load(source)["w"]
    weight, scales, biases = mx.quantize(w, group_size=int(group_size), bits=int(bits))
    mx.save_safetensors(target, {"weight": weight, "scales": scales, "biases": biases})


if __name__ == "__main__":
    main()
