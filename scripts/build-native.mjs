#!/usr/bin/env node
// Builds the MLX addon in native/ (npm's install script; `npm run build:native` by hand). MLX is found through
// MLX_DIR (its CMake directory or prefix), else the prefix of Python's MLX (`python3 -m mlx
// --cmake-dir`), else Homebrew's. Without MLX (or CMake) the install still succeeds: one line says
// the MLX backend is unavailable and how to get it. The outcome is written to build/status.json,
// which the conformance suite reads to know whether MLX should be under test. Shipped in the package
// (package.json "files"), since a global install builds the addon on the user's machine.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), "..", "native");
const buildDir = join(nativeDir, "build");
const advice = JSON.parse(readFileSync(join(nativeDir, "advice.json"), "utf8"));

/** `dir` if it holds MLXConfig.cmake, or the CMake directory under a prefix `dir`. */
function configDirIn(dir) {
  for (const candidate of [dir, join(dir, "share", "cmake", "MLX"), join(dir, "lib", "cmake", "MLX")]) {
    if (existsSync(join(candidate, "MLXConfig.cmake"))) return resolve(candidate);
  }
  return null;
}

function quiet(command, args) {
  try {
    return execFileSync(command, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 60_000,
    }).trim();
  } catch {
    return null;
  }
}

/** { dir } with MLX's CMake directory, or { reason } why none was found. */
function findMlx() {
  const given = process.env.MLX_DIR;
  if (given) {
    const dir = configDirIn(given);
    return dir ? { dir } : { reason: `MLX_DIR=${given} holds no MLXConfig.cmake` };
  }
  for (const python of ["python3", "python"]) {
    const prefix = quiet(python, ["-m", "mlx", "--cmake-dir"]);
    const dir = prefix && configDirIn(prefix);
    if (dir) return { dir };
  }
  const brew = quiet("brew", ["--prefix", "mlx"]);
  const dir = brew && configDirIn(brew);
  if (dir) return { dir };
  return { reason: "MLX not found" };
}

function writeStatus(status) {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(join(buildDir, "status.json"), JSON.stringify(status, null, 2) + "\n");
}

function unavailable(reason, found = { mlxFound: false }) {
  writeStatus({ ...found, built: false, reason });
  console.log(`agent-memory: ${advice.unavailable.replace("{reason}", reason)}`);
}

function main() {
  if (process.env.AGENT_MEMORY_SKIP_MLX === "1") return unavailable("skipped: AGENT_MEMORY_SKIP_MLX=1");
  const mlx = findMlx();
  if (!mlx.dir) return unavailable(mlx.reason);
  if (quiet("cmake", ["--version"]) === null) {
    return unavailable("MLX found, but CMake is not installed", { mlxFound: true, mlxDir: mlx.dir });
  }

  const require = createRequire(import.meta.url);
  const cmakeJs = join(dirname(require.resolve("cmake-js/package.json")), "bin", "cmake-js");
  const args = [cmakeJs, "compile", "--directory", nativeDir, "--out", buildDir, `--CDMLX_DIR=${mlx.dir}`];
  const result = spawnSync(process.execPath, args, {
    cwd: nativeDir,
    encoding: "utf8",
    env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: String(Math.max(1, cpus().length)) },
  });
  if (result.status !== 0) {
    const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-40).join("\n");
    writeStatus({ mlxFound: true, built: false, mlxDir: mlx.dir, reason: "the addon failed to build" });
    console.error(output);
    console.error(`agent-memory: MLX found at ${mlx.dir}, but the MLX addon failed to build (output above)`);
    // A machine with MLX that cannot build the addon is broken for the MLX backend, not for WebGPU:
    // the install succeeds unless the caller asked for the addon to be required.
    process.exitCode = process.env.AGENT_MEMORY_REQUIRE_MLX === "1" ? 1 : 0;
    return;
  }
  writeStatus({ mlxFound: true, built: true, mlxDir: mlx.dir });
  console.log(`agent-memory: MLX backend built against ${mlx.dir}`);
}

main();
