#!/usr/bin/env node
// npm run conformance [-- --backend NAME]: the conformance suite on one backend (default: every
// backend usable here). Extra arguments go to vitest.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  options: { backend: { type: "string" } },
  allowPositionals: true,
  strict: false,
});
const env = { ...process.env };
if (typeof values.backend === "string") env.CONFORMANCE_BACKEND = values.backend;
const result = spawnSync("npx", ["vitest", "run", "conformance", ...positionals], { stdio: "inherit", env });
process.exit(result.status ?? 1);
