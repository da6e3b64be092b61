/**
 * The package as users get it: `npx agent-memory` in a clone, and a global install of the packed
 * tarball (dependencies come from the registry or npm's cache, as for any user).
 */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, cleanEnv, scratchDir } from "../support/cli.js";

const run = promisify(execFile);
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

describe("packaging", () => {
  it("runs through npx in the clone", async () => {
    const { stdout } = await run("npx", ["--no-install", "agent-memory", "version"], {
      cwd: REPO_ROOT,
      env: cleanEnv(),
    });
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("installs globally from the packed tarball and runs", { timeout: 240_000 }, async () => {
    const packDir = scratchDir("agent-memory-pack-");
    await run(npm, ["pack", "--ignore-scripts", "--pack-destination", packDir], { cwd: REPO_ROOT, env: cleanEnv() });
    const tarball = readdirSync(packDir).find((name) => name.endsWith(".tgz"));
    expect(tarball).toBeDefined();

    const prefix = scratchDir("agent-memory-global-");
    await run(
      npm,
      [
        "install",
        "--global",
        "--prefix",
        prefix,
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        join(packDir, tarball!),
      ],
      { env: cleanEnv(), timeout: 200_000 },
    );
    const installed = join(prefix, "bin", "agent-memory");
    const version = await run(installed, ["version"], { env: cleanEnv(), cwd: scratchDir() });
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const config = await run(installed, ["config", "--port", "9000"], { env: cleanEnv(), cwd: scratchDir() });
    expect(JSON.parse(config.stdout)).toMatchObject({ SEMANTIC_SERVER_PORT: { value: 9000, source: "flag" } });
  });
});
