/**
 * The WebGPU backend's behaviour when the GPU is not there or goes away: a missing adapter is one
 * error naming what to install; a lost device is reported through `failure`, not a crash. And the
 * runtime's ordering: host writes land between the work recorded before and after them.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { WebGpuBackend } from "../../backends/webgpu/backend.js";
import { baseFlags, mergeToggleFlags } from "../../backends/webgpu/device.js";
import type { GpuTensor } from "../../backends/webgpu/runtime.js";
import { REPO_ROOT, cleanEnv } from "../support/cli.js";

const run = promisify(execFile);

/** Runs `body` with these variables set (undefined: unset), restoring them after. */
function withEnv(variables: Record<string, string | undefined>, body: () => void): void {
  const saved = Object.fromEntries(Object.keys(variables).map((name) => [name, process.env[name]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  try {
    apply(variables);
    body();
  } finally {
    apply(saved);
  }
}

describe("WebGPU device", () => {
  it("asks Dawn for f16 and subgroup matrices unless SEMANTIC_WEBGPU_MATRIX says false", () => {
    withEnv({ SEMANTIC_WEBGPU_MATRIX: undefined, SEMANTIC_WEBGPU_BOUNDS_CHECKS: "true" }, () => {
      const toggles = ["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"];
      expect(baseFlags()).toEqual(toggles);
      for (const on of ["true", "1", "YES"]) {
        process.env.SEMANTIC_WEBGPU_MATRIX = on;
        expect(baseFlags()).toEqual(toggles);
      }
      for (const off of ["false", "0", " Off "]) {
        process.env.SEMANTIC_WEBGPU_MATRIX = off;
        expect(baseFlags()).toEqual([]);
      }
    });
  });

  it("turns Dawn's bounds checks off unless SEMANTIC_WEBGPU_BOUNDS_CHECKS says true", () => {
    withEnv({ SEMANTIC_WEBGPU_MATRIX: "false", SEMANTIC_WEBGPU_BOUNDS_CHECKS: undefined }, () => {
      expect(baseFlags()).toEqual(["enable-dawn-features=disable_robustness"]);
      process.env.SEMANTIC_WEBGPU_BOUNDS_CHECKS = "off";
      expect(baseFlags()).toEqual(["enable-dawn-features=disable_robustness"]);
      process.env.SEMANTIC_WEBGPU_BOUNDS_CHECKS = " On";
      expect(baseFlags()).toEqual([]);
      process.env.SEMANTIC_WEBGPU_MATRIX = "true";
      process.env.SEMANTIC_WEBGPU_BOUNDS_CHECKS = "0";
      expect(baseFlags()).toEqual([
        "enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness",
      ]);
    });
  });

  it("merges a caller's Dawn toggles into ours (Dawn keeps only the last flag of a name)", () => {
    expect(
      mergeToggleFlags([
        "enable-dawn-features=allow_unsafe_apis,disable_robustness",
        "disable-dawn-features=timestamp_quantization",
        "verbose=1",
        "enable-dawn-features=dump_shaders,allow_unsafe_apis",
      ]),
    ).toEqual([
      "enable-dawn-features=allow_unsafe_apis,disable_robustness,dump_shaders",
      "disable-dawn-features=timestamp_quantization",
      "verbose=1",
    ]);
  });

  it("runs a kernel's out-of-range index unclamped without bounds checks, clamped with them", async () => {
    // A workgroup array read at index 6 of 4: Tint's robustness clamps it to the last element (53);
    // without it the read is whatever lies past the array in workgroup memory (not 53 on lavapipe).
    const kernel = join(REPO_ROOT, "kernels/test_bounds_probe.wgsl");
    const script = `import(${JSON.stringify(join(REPO_ROOT, "dist/backends/webgpu/device.js"))}).then(async (m) => {
      const { device } = await m.acquireDevice(() => {});
      const code = (await import("node:fs")).readFileSync(${JSON.stringify(kernel)}, "utf8");
      const pipeline = device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "probe" } });
      const o = device.createBuffer({ size: 8, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
      device.queue.writeBuffer(o, 0, new Uint32Array([6, 0]));
      const read = device.createBuffer({ size: 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: o } }] }));
      pass.dispatchWorkgroups(1);
      pass.end();
      encoder.copyBufferToBuffer(o, 0, read, 0, 8);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      console.log("read " + new Uint32Array(read.getMappedRange())[1]);
      process.exit(0);
    })`;
    const readWith = async (checks: string) => {
      const result = await run(process.execPath, ["--input-type=module", "-e", script], {
        env: cleanEnv({ SEMANTIC_WEBGPU_BOUNDS_CHECKS: checks }),
      });
      return /read (\d+)/.exec(result.stdout)?.[1];
    };
    expect(await readWith("true")).toBe("53");
    const unchecked = await readWith("false");
    expect(unchecked).toBeDefined();
    expect(unchecked).not.toBe("53");
  });

  it("without any Vulkan driver, fails with one error that says what to install", async () => {
    const registry = join(REPO_ROOT, "dist/backends/registry.js");
    const script = `import(${JSON.stringify(registry)}).then((m) => m.createBackend("webgpu")).then(
      () => { console.log("created"); process.exit(0); },
      (error) => { console.log(error.name + ": " + error.message); process.exit(3); })`;
    const outcome = await run(process.execPath, ["--input-type=module", "-e", script], {
      env: cleanEnv({ VK_DRIVER_FILES: "/nonexistent/icd.json", VK_ICD_FILENAMES: "/nonexistent/icd.json" }),
    }).then(
      (result) => ({ code: 0, stdout: result.stdout }),
      (error: { code: number; stdout: string }) => ({ code: error.code, stdout: error.stdout }),
    );
    expect(outcome.code).toBe(3);
    expect(outcome.stdout).toContain("NoWebGpuAdapterError: no WebGPU adapter found");
    expect(outcome.stdout).toContain("mesa-vulkan-drivers");
  });

  it("reports a lost device through `failure` and keeps the process alive", async () => {
    const backend = await WebGpuBackend.create();
    expect(backend.failure).toBeNull();
    const x = backend.upload(new Float32Array([1, 2, 3]), [3], "f32");
    expect(Array.from((await backend.read(backend.scale(x, 2))) as Float32Array)).toEqual([2, 4, 6]);
    backend.runtime.device.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(backend.failure).toMatch(/WebGPU device lost \(destroyed\)/);
  });
});

describe("WebGPU runtime ordering", () => {
  it("an upload into a just-released buffer does not change what already-recorded work reads", async () => {
    const backend = await WebGpuBackend.create();
    const source = backend.upload(new Float32Array([1, 2, 3, 4]), [4], "f32");
    const doubled = backend.scale(source, 2);
    backend.free(source);
    // Same size class: the pool hands the freed buffer straight back to this upload.
    const other = backend.upload(new Float32Array([100, 100, 100, 100]), [4], "f32");
    expect(Array.from((await backend.read(doubled)) as Float32Array)).toEqual([2, 4, 6, 8]);
    expect(Array.from((await backend.read(other)) as Float32Array)).toEqual([100, 100, 100, 100]);
    backend.dispose();
  });

  it("bulk uploads through the reused mapped buffers land in order, whole, whoever shares the buffers", async () => {
    const backend = await WebGpuBackend.create();
    const runtime = backend.runtime;
    // Three buffers of 64 bytes: every upload below takes several pieces and waits for reused buffers.
    runtime.bulk.useUploadRing(64, 3);
    const count = 256;
    const original = Float32Array.from({ length: count }, (_, i) => i);
    const x = backend.upload(original, [count], "f32");
    const before = backend.scale(x, 2); // recorded, not yet submitted: must see the original
    const replacement = Float32Array.from({ length: count }, (_, i) => 1000 + i);
    const reused = new Float32Array(count);
    reused.set(replacement);
    await runtime.uploadBulk(x as GpuTensor, 0, new Uint8Array(reused.buffer));
    reused.fill(-1); // the caller's buffer is its own again once the upload resolves
    const after = backend.scale(x, 3);
    expect(Array.from((await backend.read(before)) as Float32Array)).toEqual(Array.from(original, (v) => 2 * v));
    expect(Array.from((await backend.read(after)) as Float32Array)).toEqual(Array.from(replacement, (v) => 3 * v));

    // Eight callers at once, each into its own quarter-kilobyte at its own offset, odd sizes included.
    const parts = Array.from({ length: 8 }, (_, part) =>
      Float32Array.from({ length: 24 + part }, (_, i) => part * 100 + i),
    );
    const target = backend.upload(new Float32Array(8 * 64), [8 * 64], "f32") as GpuTensor;
    await Promise.all(parts.map((part, index) => runtime.uploadBulk(target, index * 256, new Uint8Array(part.buffer))));
    const landed = (await backend.read(target)) as Float32Array;
    parts.forEach((part, index) => {
      expect(Array.from(landed.subarray(index * 64, index * 64 + part.length)), `part ${index}`).toEqual(
        Array.from(part),
      );
      expect(landed[index * 64 + part.length], `after part ${index}`).toBe(0);
    });
    backend.dispose();
  });

  it("bulk downloads read what the work recorded before them wrote, piece by piece through reused buffers", async () => {
    const backend = await WebGpuBackend.create();
    const runtime = backend.runtime;
    runtime.bulk.useDownloadRing(64, 3); // every read below takes several pieces, more than there are buffers
    const count = 300;
    const x = backend.upload(
      Float32Array.from({ length: count }, (_, i) => i),
      [count],
      "f32",
    );
    const tripled = backend.scale(x, 3) as GpuTensor; // recorded, not yet submitted
    const whole = new Uint8Array(count * 4);
    const middle = new Uint8Array(40 * 4);
    // Two reads at once, one of them from an offset: each lands whole in its own buffer.
    await Promise.all([runtime.downloadBulk(tripled, 0, whole), runtime.downloadBulk(tripled, 100 * 4, middle)]);
    expect(Array.from(new Float32Array(whole.buffer))).toEqual(Array.from({ length: count }, (_, i) => 3 * i));
    expect(Array.from(new Float32Array(middle.buffer))).toEqual(Array.from({ length: 40 }, (_, i) => 3 * (100 + i)));
    backend.dispose();
  });
});
