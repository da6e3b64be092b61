/**
 * Backends by name, and the choice `auto` makes: MLX on Apple Silicon when its addon is built,
 * WebGPU otherwise. The rest of the program never names a backend; it asks the registry.
 */
import type { Backend } from "./contract.js";

export type BackendName = "webgpu" | "mlx";

interface BackendEntry {
  /** Null when usable here, otherwise why not and how to fix it. */
  unavailableReason(): Promise<string | null>;
  create(): Promise<Backend>;
}

const entries: Record<BackendName, BackendEntry> = {
  webgpu: {
    unavailableReason: () => Promise.resolve(null),
    create: async () => (await import("./webgpu/backend.js")).WebGpuBackend.create(),
  },
  mlx: {
    // The addon's loader: null once native/ built it, otherwise the advice `npm install` printed.
    unavailableReason: async () => (await import("./mlx/addon.js")).mlxUnavailableReason(),
    create: async () => (await import("./mlx/backend.js")).MlxBackend.create(),
  },
};

export class BackendUnavailableError extends Error {
  override name = "BackendUnavailableError";
}

/** The backend `auto` picks on this machine. */
export async function resolveBackendName(requested: BackendName | "auto"): Promise<BackendName> {
  if (requested !== "auto") return requested;
  const appleSilicon = process.platform === "darwin" && process.arch === "arm64";
  if (appleSilicon && (await entries.mlx.unavailableReason()) === null) return "mlx";
  return "webgpu";
}

export async function createBackend(requested: BackendName | "auto"): Promise<Backend> {
  const name = await resolveBackendName(requested);
  const reason = await entries[name].unavailableReason();
  if (reason !== null) throw new BackendUnavailableError(`--backend ${name}: ${reason}`);
  return entries[name].create();
}
