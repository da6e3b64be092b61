/**
 * The WebGPU backend's behaviour when the GPU is not there or goes away: a missing adapter is one
 * error naming what to install; a lost device is reported through `failure`, not a crash.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { WebGpuBackend } from "../../backends/webgpu/backend.js";
import { REPO_ROOT, cleanEnv } from "../support/cli.js";

const run = promisify(execFile);

describe("WebGPU device", () => {
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
});
