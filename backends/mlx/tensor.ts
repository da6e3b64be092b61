/**
 * Tensors of the MLX backend: a JS object holding a handle to an array on the compute thread. The
 * array lives until free() — or, as a safety net, until the object is garbage-collected — and work
 * already recorded that reads it keeps it alive on the native side (MLX arrays are reference-counted).
 */
import type { DType, Tensor } from "../contract.js";
import type { Handle, MlxAddon } from "./addon.js";
export { describeShape, sizeOf } from "../op-checks.js";

export class MlxTensor implements Tensor {
  freed = false;
  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly handle: Handle,
    /** Bytes counted as weights while this tensor lives; 0 for activations. */
    readonly weightBytes: number,
  ) {}
}

/**
 * Creates tensors and releases them: explicitly (free) or when their object is collected. Counts the
 * bytes of live weights for memory().
 */
export class TensorLifetimes {
  weightsBytes = 0;
  private readonly registry: FinalizationRegistry<{ handle: Handle; weightBytes: number }>;

  constructor(private readonly addon: MlxAddon) {
    this.registry = new FinalizationRegistry(({ handle, weightBytes }) => {
      this.weightsBytes -= weightBytes;
      addon.free(handle);
    });
  }

  adopt(handle: Handle, shape: readonly number[], dtype: DType, weightBytes = 0): MlxTensor {
    const tensor = new MlxTensor([...shape], dtype, handle, weightBytes);
    this.weightsBytes += weightBytes;
    this.registry.register(tensor, { handle, weightBytes }, tensor);
    return tensor;
  }

  release(tensor: MlxTensor): void {
    if (tensor.freed) return;
    tensor.freed = true;
    this.registry.unregister(tensor);
    this.weightsBytes -= tensor.weightBytes;
    this.addon.free(tensor.handle);
  }
}
