/**
 * Loading the native addon (native/, built at install time by native/build.mjs) and saying why it is
 * unavailable when it is not: the same advice the install printed.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Keep in step with `enum class Op` in native/src/ops.h. */
export const OP_CODES = {
  embedding: 0,
  embeddingQuantized: 1,
  matmul: 2,
  matmulQuantized: 3,
  rmsNorm: 4,
  rope: 5,
  geluTanh: 6,
  silu: 7,
  add: 8,
  mul: 9,
  scale: 10,
  softmax: 11,
  argmax: 12,
  topK: 13,
  reshape: 14,
  slice: 15,
  concat: 16,
  transpose: 17,
  copy: 18,
} as const;

/** Keep in step with dtypeFromCode in native/src/addon.cpp. */
export const DTYPE_CODES = { f32: 0, f16: 1, bf16: 2, u32: 3, i32: 4 } as const;

export type Handle = number;

export interface NativeMemory {
  active: number;
  peak: number;
  cache: number;
  limit: number;
  /** Arrays the compute thread holds for live handles. */
  handles: number;
}

/** The addon's functions (native/src/addon.cpp). Every call returns at once; work runs on its thread. */
export interface MlxAddon {
  upload(data: ArrayBufferView, shape: readonly number[], dtype: number): Handle;
  op(code: number, inputs: readonly Handle[], params: readonly number[]): Handle;
  free(handle: Handle): void;
  read(handle: Handle): Promise<ArrayBuffer>;
  flush(): Promise<void>;
  kvCreate(spec: readonly number[]): Handle;
  kvWrite(cache: Handle, layer: number, keys: Handle, values: Handle, slots: Handle): void;
  kvCopy(cache: Handle, pairs: readonly number[]): void;
  kvExport(cache: Handle, block: number): Promise<ArrayBuffer>;
  kvImport(cache: Handle, block: number, bytes: Uint8Array): void;
  kvFree(cache: Handle): void;
  attentionPrepare(words: Int32Array): Handle;
  attention(q: Handle, cache: Handle, layer: number, batch: Handle, scale: number, window: number): Handle;
  attentionFree(batch: Handle): void;
  memory(): NativeMemory;
  setLimits(memoryBytes: number, cacheBytes: number): Promise<void>;
  failure(): string | null;
  describe(): Promise<ArrayBuffer>;
}

/** The package root: the folder holding native/ (two levels up from source, three from dist/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "native", "advice.json"))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`mlx: cannot find the package's native/ folder above ${fileURLToPath(import.meta.url)}`);
}

const ROOT = packageRoot();
export const ADDON_PATH = join(ROOT, "native", "build", "Release", "agent_memory_mlx.node");
const STATUS_PATH = join(ROOT, "native", "build", "status.json");

interface BuildStatus {
  mlxFound: boolean;
  built: boolean;
  reason?: string;
}

function buildStatus(): BuildStatus | null {
  try {
    return JSON.parse(readFileSync(STATUS_PATH, "utf8")) as BuildStatus;
  } catch {
    return null;
  }
}

/** The line native/build.mjs prints when it cannot build the addon, for `reason`. */
export function unavailableAdvice(reason: string): string {
  const advice = JSON.parse(readFileSync(join(ROOT, "native", "advice.json"), "utf8")) as { unavailable: string };
  return advice.unavailable.replace("{reason}", reason);
}

/**
 * Whether MLX should be usable here: the addon was built, or the install found MLX (so a failed build
 * is a failure to report, not a backend to leave out).
 */
export function mlxExpected(): boolean {
  return existsSync(ADDON_PATH) || buildStatus()?.mlxFound === true;
}

let loaded: { addon: MlxAddon } | { error: string } | undefined;

/** The addon, or an Error whose message is the advice line. */
export function loadAddon(): MlxAddon {
  if (!loaded) {
    if (!existsSync(ADDON_PATH)) {
      const status = buildStatus();
      const reason = status?.reason ?? "the addon is not built";
      loaded = { error: unavailableAdvice(reason) };
    } else {
      try {
        loaded = { addon: createRequire(import.meta.url)(ADDON_PATH) as MlxAddon };
      } catch (error) {
        loaded = { error: unavailableAdvice(`the addon failed to load: ${(error as Error).message.split("\n")[0]}`) };
      }
    }
  }
  if ("error" in loaded) throw new Error(loaded.error);
  return loaded.addon;
}

/** Null when the MLX backend can be created here, otherwise the advice line. */
export function mlxUnavailableReason(): string | null {
  try {
    loadAddon();
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}
