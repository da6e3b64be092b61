/**
 * How the MLX addon is built, found and chosen: the install line without MLX, the registry's advice,
 * `auto`, and the addon loading libmlx through its rpath alone.
 */
import { execFile } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ADDON_PATH, mlxExpected, unavailableAdvice } from "../../backends/mlx/addon.js";
import { createBackend, resolveBackendName } from "../../backends/registry.js";
import { REPO_ROOT, scratchDir } from "../support/cli.js";

const run = promisify(execFile);

/** The build script and its advice in a scratch package, so its status file is its own. */
function scratchPackage(): string {
  const root = scratchDir("agent-memory-native-");
  mkdirSync(join(root, "scripts"));
  mkdirSync(join(root, "native"));
  copyFileSync(join(REPO_ROOT, "scripts/build-native.mjs"), join(root, "scripts/build-native.mjs"));
  copyFileSync(join(REPO_ROOT, "native/advice.json"), join(root, "native/advice.json"));
  return root;
}

describe("MLX addon install and selection", () => {
  it("without MLX, the install succeeds with one line saying how to get the MLX backend", async () => {
    const root = scratchPackage();
    // No python3, brew or cmake on PATH: nothing can find MLX.
    const { stdout, stderr } = await run(process.execPath, [join(root, "scripts/build-native.mjs")], {
      env: { PATH: join(root, "no-such-bin"), HOME: root },
    });
    expect(stderr).toBe("");
    expect(stdout).toBe(`agent-memory: ${unavailableAdvice("MLX not found")}\n`);
    expect(stdout).toContain('pip install "mlx[cpu]"');
    const status = JSON.parse(readFileSync(join(root, "native/build/status.json"), "utf8")) as { mlxFound: boolean };
    expect(status.mlxFound).toBe(false);
  });

  it("names a wrong MLX_DIR instead of looking elsewhere", async () => {
    const root = scratchPackage();
    const { stdout } = await run(process.execPath, [join(root, "scripts/build-native.mjs")], {
      env: { PATH: process.env.PATH, HOME: root, MLX_DIR: join(root, "nowhere") },
    });
    expect(stdout).toBe(
      `agent-memory: ${unavailableAdvice(`MLX_DIR=${join(root, "nowhere")} holds no MLXConfig.cmake`)}\n`,
    );
  });

  it("--backend mlx without the addon fails with the install's advice", async () => {
    // The compiled registry in a package whose native/ was never built.
    const root = scratchDir("agent-memory-unbuilt-");
    mkdirSync(join(root, "native"));
    copyFileSync(join(REPO_ROOT, "native/advice.json"), join(root, "native/advice.json"));
    cpSync(join(REPO_ROOT, "dist/backends"), join(root, "dist/backends"), { recursive: true });
    const script = `import("${join(root, "dist/backends/registry.js")}").then((r) => r.createBackend("mlx")).catch((e) => console.log(e.name + ": " + e.message))`;
    const { stdout } = await run(process.execPath, ["-e", script], { cwd: root });
    expect(stdout).toBe(`BackendUnavailableError: --backend mlx: ${unavailableAdvice("the addon is not built")}\n`);
  });

  it("auto picks MLX only on Apple Silicon with the addon built, WebGPU otherwise", async () => {
    const appleSilicon = process.platform === "darwin" && process.arch === "arm64";
    expect(await resolveBackendName("auto")).toBe(appleSilicon && existsSync(ADDON_PATH) ? "mlx" : "webgpu");
    expect(await resolveBackendName("mlx")).toBe("mlx");
  });

  if (!mlxExpected()) return;

  it("the built addon loads libmlx through its rpath, with no library path set", async () => {
    const script = `require(${JSON.stringify(ADDON_PATH)}).describe().then((b) => console.log(Buffer.from(b).toString()))`;
    const { stdout } = await run(process.execPath, ["-e", script], { env: { PATH: process.env.PATH } });
    expect(stdout.trim()).toMatch(/^MLX \d+\.\d+\.\d+\S* on (CPU|GPU)$/);
  });

  it("--backend mlx creates the MLX backend where MLX was found", async () => {
    const backend = await createBackend("mlx");
    expect(backend.name).toBe("mlx");
    expect(backend.failure).toBeNull();
    expect(backend.deviceDescription).toMatch(/^MLX /);
  });
});
