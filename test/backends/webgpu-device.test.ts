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
import { baseFlags } from "../../backends/webgpu/device.js";
import type { GpuTensor } from "../../backends/webgpu/runtime.js";
import { REPO_ROOT, cleanEnv } from "../support/cli.js";

const run = promisify(execFile);

describe("WebGPU device", () => {
  it("asks Dawn for f16 and subgroup matrices unless SEMANTIC_WEBGPU_MATRIX says false", () => {
    const saved = process.env.SEMANTIC_WEBGPU_MATRIX;
    try {
      const toggles = ["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"];
      delete process.env.SEMANTIC_WEBGPU_MATRIX;
      expect(baseFlags()).toEqual(toggles);
      for (const on of ["true", "1", "YES"]) {
        process.env.SEMANTIC_WEBGPU_MATRIX = on;
        expect(baseFlags()).toEqual(toggles);
      }
      for (const off of ["false", "0", " Off "]) {
        process.env.SEMANTIC_WEBGPU_MATRIX = off;
        expect(baseFlags()).toEqual([]);
      }
    } finally {
      if (saved === undefined) delete process.env.SEMANTIC_WEBGPU_MATRIX;
      else process.env.SEMANTIC_WEBGPU_MATRIX = saved;
    }
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
