/**
 * Global setup. Tests that spawn the CLI run the compiled dist/, so build first with the package's own build
 * script (the same one `npm install` runs): incremental, so an unchanged tree costs about a second.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  // One seed for the whole run, inherited by every test worker, so the "repeat with
  // CONFORMANCE_SEED=N" line that conformance prints reproduces every file's inputs at once.
  process.env.CONFORMANCE_SEED ??= String(Math.floor(Math.random() * 2 ** 31));
  const root = fileURLToPath(new URL("../..", import.meta.url));
  execFileSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" });
}
