/**
 * Global setup. Tests that spawn the CLI run the compiled dist/, so build first with the package's own build
 * script (the same one `npm install` runs): incremental, so an unchanged tree costs about a second. Then
 * generate the tiny model that `serve` loads in tests (AGENT_MEMORY_TEST_MODEL), with the real CLI.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export default function setup(): () => void {
  // One seed for the whole run, inherited by every test worker, so the "repeat with
  // CONFORMANCE_SEED=N" line that conformance prints reproduces every file's inputs at once.
  process.env.CONFORMANCE_SEED ??= String(Math.floor(Math.random() * 2 ** 31));
  const root = fileURLToPath(new URL("../..", import.meta.url));
  execFileSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" });

  const fixtures = mkdtempSync(join(tmpdir(), "agent-memory-fixtures-"));
  const model = join(fixtures, "llama-tiny");
  const cli = join(root, "dist/src/cli/main.js");
  execFileSync(process.execPath, [cli, "make-test-model", "--arch", "llama", "--preset", "tiny", "--out", model], {
    stdio: "inherit",
  });
  process.env.AGENT_MEMORY_TEST_MODEL = model;
  return () => rmSync(fixtures, { recursive: true, force: true });
}
