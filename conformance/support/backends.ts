/**
 * The backends the conformance suite runs on: every backend usable on this machine, or the one named
 * by CONFORMANCE_BACKEND (`npm run conformance -- --backend NAME`). A backend that should be here and
 * cannot start fails the suite; it is never skipped.
 */
import type { Backend, Tensor } from "../../backends/contract.js";
import { mlxExpected } from "../../backends/mlx/addon.js";
import { createBackend, type BackendName } from "../../backends/registry.js";

export function backendsUnderTest(): BackendName[] {
  const named = process.env.CONFORMANCE_BACKEND;
  if (named) return [named as BackendName];
  // MLX is under test wherever its addon was built or the install found MLX (then a failed build
  // fails the suite instead of leaving the backend out).
  return mlxExpected() ? ["webgpu", "mlx"] : ["webgpu"];
}

const instances = new Map<BackendName, Promise<Backend>>();

export function backendFor(name: BackendName): Promise<Backend> {
  let instance = instances.get(name);
  if (!instance) {
    instance = createBackend(name);
    instances.set(name, instance);
  }
  return instance;
}

/**
 * Fill the backend's buffer pool with NaN in the size class of an op's output, so an output element a
 * kernel forgets to write reads as NaN instead of a stale right answer.
 */
export function poison(backend: Backend, elements: number): void {
  const tensor: Tensor = backend.upload(new Float32Array(elements).fill(NaN), [elements], "f32");
  backend.free(tensor);
}
