/**
 * Tests that spawn the CLI run the compiled dist/, so build first with the package's own build
 * script (the same one `npm install` runs): incremental, so an unchanged tree costs about a second.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  execFileSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" });
}
