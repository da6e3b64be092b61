/**
 * "A setting that nothing reads does not exist." Every setting must be read somewhere outside the
 * configuration code, except those whose consumer is a layer not built yet: those are listed here with
 * the issue that will read them, and the test fails as soon as one is read, so the list only shrinks.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { SETTING_KEYS, type SettingKey } from "../../src/config/settings.js";
import { REPO_ROOT } from "../support/cli.js";

const NOT_YET_READ: Partial<Record<SettingKey, string>> = {};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

const consumers = [...sourceFiles(join(REPO_ROOT, "src")), ...sourceFiles(join(REPO_ROOT, "backends"))]
  .filter((path) => !relative(REPO_ROOT, path).startsWith("src/config/"))
  .map((path) => ({ path: relative(REPO_ROOT, path), text: readFileSync(path, "utf8") }));

function readersOf(key: SettingKey): string[] {
  const pattern = new RegExp(`\\b${key}\\b`);
  return consumers.filter(({ text }) => pattern.test(text)).map(({ path }) => path);
}

describe("every setting is live", () => {
  for (const key of SETTING_KEYS) {
    const pending = NOT_YET_READ[key];
    if (pending) {
      it(`${key} is listed as waiting for ${pending}, so nothing reads it yet`, () => {
        expect(readersOf(key), `${key} is read now: remove it from NOT_YET_READ`).toEqual([]);
      });
    } else {
      it(`${key} is read outside src/config`, () => {
        expect(readersOf(key).length, `nothing reads ${key}`).toBeGreaterThan(0);
      });
    }
  }
});
