import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { readReadmeTable, renderConfigTable, tableCells } from "../../src/config/docs.js";
import { REPO_ROOT } from "../support/cli.js";

it("README's configuration table is the one the settings schema renders (run `npm run docs:config`)", () => {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const table = readReadmeTable(readme);
  expect(table, "README.md lacks the configuration table markers").not.toBeNull();
  expect(tableCells(table!)).toEqual(tableCells(renderConfigTable()));
  expect(tableCells(table!).length).toBeGreaterThan(20);
});
