"""Independent oracle for our safetensors reader/writer: the reference Python implementation.

  write OUT SPEC_JSON   writes tensors described by SPEC_JSON ([{name, dtype, shape, values}]) with
                        safetensors.numpy.save_file, plus __metadata__ {"writer": "python"}
  read PATH             prints {"metadata": ..., "tensors": {name: {dtype, shape, values}}} as JSON
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
         "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "BOOL": np.bool_}


def main() -> None:
    command = sys.argv[1]
    if command == "write":
        spec = json.loads(sys.argv[3])
        tensors = {item["name"]: np.array(item["values"], dtype=NUMPY[item["dtype"]]).reshape(item["shape"])
                   for item in spec}
        save_file(tensors, sys.argv[2], metadata={"writer": "python"})
    elif command == "read":
        out = {"tensors": {}}
        with safe_open(sys.argv[2], framework="np") as handle:
            out["metadata"] = handle.metadata()
            for name in handle.keys():
                view = handle.get_slice(name)
                if view.get_dtype() == "BF16":  # numpy has no bfloat16: report the header only
                    out["tensors"][name] = {"dtype": "BF16", "shape": list(view.get_shape())}
                    continue
                array = handle.get_tensor(name)
                out["tensors"][name] = {"dtype": str(array.dtype), "shape": list(array.shape),
                                        "values": array.reshape(-1).tolist()}
        print(json.dumps(out))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
