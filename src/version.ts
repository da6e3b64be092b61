import { readFileSync } from "node:fs";

/**
 * The package version, read from package.json at run time. The path differs between the compiled
 * CLI (dist/src/version.js) and the sources under test (src/version.ts), so look upward for it.
 */
function readPackageVersion(): string {
  for (const relative of ["../package.json", "../../package.json"]) {
    try {
      const manifest = JSON.parse(readFileSync(new URL(relative, import.meta.url), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (manifest.name === "agent-memory" && manifest.version) return manifest.version;
    } catch {
      // not at this level; try the next one up
    }
  }
  throw new Error("agent-memory: cannot find its own package.json");
}

export const VERSION = readPackageVersion();
