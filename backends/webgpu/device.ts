/**
 * Getting a WebGPU device from Dawn with the adapter's real limits and useful features. The object
 * `create()` returns is kept for the life of the process: if it is garbage-collected while a device
 * is in use, Dawn crashes the process.
 */
import { create, globals } from "webgpu";

const instances = new Map<string, GPU>();

export interface GpuDevice {
  device: GPUDevice;
  adapterDescription: string;
  limits: GPUSupportedLimits;
  hasSubgroups: boolean;
  hasF16: boolean;
  hasTimestamps: boolean;
  /** Smallest subgroup the adapter may run (0 without subgroups): kernels that sum with shuffles alone need it. */
  subgroupMinSize: number;
  /** A Vulkan-on-the-CPU adapter (lavapipe, SwiftShader): its shader compiler balks at heavy unrolling. */
  isCpuAdapter: boolean;
  /**
   * The device multiplies 16×16 f16 matrices into f32 ones per subgroup (Dawn's experimental subgroup
   * matrices: tensor cores on NVIDIA), with subgroups of exactly 32 lanes: attention_prefill_mma.wgsl.
   */
  hasMatrix16: boolean;
}

/** No adapter: the message says what to install. */
export class NoWebGpuAdapterError extends Error {
  override name = "NoWebGpuAdapterError";
}

const SUBGROUP_MATRIX = "chromium-experimental-subgroup-matrix" as GPUFeatureName;
const WANTED_FEATURES: GPUFeatureName[] = ["subgroups", "shader-f16", "timestamp-query", SUBGROUP_MATRIX];

/**
 * Dawn toggles every device is created with. Dawn's Vulkan backend offers neither f16 nor subgroup
 * matrices on NVIDIA by default; these two let an H200 have both (bench/RESULTS.md, "Tensor cores"):
 * `vulkan_enable_f16_on_nvidia`, and `allow_unsafe_apis`, which exposes experimental features such as
 * subgroup matrices. SEMANTIC_WEBGPU_MATRIX=false leaves both out (the f32 kernels everywhere).
 * And `disable_robustness` unless SEMANTIC_WEBGPU_BOUNDS_CHECKS is true: Dawn's robustness clamps
 * every array index of every kernel (what a browser needs for a page's shaders; Chrome's own renderer
 * turns it off too). Our kernels keep their indices in bounds, and the conformance suite runs them
 * without it; with it the matrix prefill kernel ran 1.4× slower on an H200 (RESULTS, "Bounds checks").
 */
export function baseFlags(): string[] {
  const toggles: string[] = [];
  if (!isFalse(process.env.SEMANTIC_WEBGPU_MATRIX)) toggles.push("allow_unsafe_apis", "vulkan_enable_f16_on_nvidia");
  if (!isTrue(process.env.SEMANTIC_WEBGPU_BOUNDS_CHECKS)) toggles.push("disable_robustness");
  return toggles.length > 0 ? [`enable-dawn-features=${toggles.join(",")}`] : [];
}

function isFalse(setting: string | undefined): boolean {
  return setting !== undefined && ["false", "0", "no", "off"].includes(setting.trim().toLowerCase());
}

function isTrue(setting: string | undefined): boolean {
  return setting !== undefined && ["true", "1", "yes", "on"].includes(setting.trim().toLowerCase());
}

/**
 * Dawn keeps one value per flag name, the last: two `enable-dawn-features=` flags (ours and a
 * caller's) become one list, so neither drops the other's toggles.
 */
export function mergeToggleFlags(flags: readonly string[]): string[] {
  const merged: string[] = [];
  const lists = new Map<string, string[]>();
  for (const flag of flags) {
    const [name, value] = flag.split("=", 2) as [string, string | undefined];
    if (value === undefined || !name.endsWith("-dawn-features")) {
      merged.push(flag);
      continue;
    }
    const list = lists.get(name);
    if (list) {
      for (const toggle of value.split(",")) if (!list.includes(toggle)) list.push(toggle);
    } else {
      lists.set(name, value.split(","));
      merged.push(name);
    }
  }
  return merged.map((flag) => (lists.has(flag) ? `${flag}=${lists.get(flag)!.join(",")}` : flag));
}

interface MatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/**
 * `dawnFlags` are Dawn's own options (e.g. `disable-dawn-features=timestamp_quantization`, which
 * benchmarks need: Dawn rounds timestamps to tens of µs, longer than a decode GEMV). One GPU object is
 * created per set of flags and kept for good.
 */
export async function acquireDevice(
  onLost: (reason: string) => void,
  dawnFlags: readonly string[] = [],
): Promise<GpuDevice> {
  const flags = mergeToggleFlags([...baseFlags(), ...dawnFlags]);
  const key = flags.join(" ");
  let gpu = instances.get(key);
  if (!gpu) {
    Object.assign(globalThis, globals);
    gpu = create(flags);
    instances.set(key, gpu);
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    const advice =
      process.platform === "linux"
        ? "install a Vulkan driver for your GPU (on Debian/Ubuntu without a GPU: mesa-vulkan-drivers >= 24, e.g. " +
          "`apt-get install -t bookworm-backports mesa-vulkan-drivers` on bookworm)"
        : "update your GPU driver";
    throw new NoWebGpuAdapterError(`no WebGPU adapter found: ${advice}`);
  }
  const requiredLimits: Record<string, number> = {};
  for (const name in adapter.limits) {
    const value = adapter.limits[name as keyof GPUSupportedLimits];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  const requiredFeatures = WANTED_FEATURES.filter((feature) => adapter.features.has(feature));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  void device.lost.then((info) => onLost(`WebGPU device lost (${info.reason}): ${info.message}`));
  const info = adapter.info;
  const configs = ((info as { subgroupMatrixConfigs?: MatrixConfig[] }).subgroupMatrixConfigs ?? []).map(
    ({ componentType, resultComponentType, M, N, K }) => ({ componentType, resultComponentType, M, N, K }),
  );
  const hasMatrix16 =
    device.features.has(SUBGROUP_MATRIX) &&
    device.features.has("shader-f16") &&
    device.features.has("subgroups") &&
    info.subgroupMinSize === 32 &&
    info.subgroupMaxSize === 32 &&
    configs.some(
      (config) =>
        config.componentType === "f16" &&
        config.resultComponentType === "f32" &&
        config.M === 16 &&
        config.N === 16 &&
        config.K === 16,
    );
  return {
    device,
    adapterDescription: [info.vendor, info.architecture, info.description].filter(Boolean).join(" / "),
    limits: device.limits,
    hasSubgroups: device.features.has("subgroups"),
    hasF16: device.features.has("shader-f16"),
    hasTimestamps: device.features.has("timestamp-query"),
    subgroupMinSize: device.features.has("subgroups") ? (info.subgroupMinSize ?? 0) : 0,
    isCpuAdapter: info.architecture === "software" || /llvmpipe|lavapipe|swiftshader/i.test(info.description),
    hasMatrix16,
  };
}
