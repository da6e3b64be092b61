import { describe, expect, it } from "vitest";
import { declaredBindings, preprocess } from "../../backends/webgpu/kernels.js";

describe("WGSL kernel preprocessing", () => {
  it("keeps the branch of each //#if that the device's defines select, nested ones included", () => {
    const source = [
      "a",
      "//#if SUBGROUPS",
      "b",
      "//#if F16",
      "c",
      "//#else",
      "d",
      "//#endif",
      "//#else",
      "e",
      "//#endif",
      "f",
    ].join("\n");
    const kept = (defines: string[]) =>
      preprocess(source, new Set(defines))
        .split("\n")
        .filter((line) => line !== "");
    expect(kept([])).toEqual(["a", "e", "f"]);
    expect(kept(["SUBGROUPS"])).toEqual(["a", "b", "d", "f"]);
    expect(kept(["SUBGROUPS", "F16"])).toEqual(["a", "b", "c", "f"]);
  });

  it("names the file and line of an unbalanced directive", () => {
    expect(() => preprocess("//#else", new Set(), "x.wgsl")).toThrow("x.wgsl:1: //#else without //#if");
    expect(() => preprocess("//#if A\nb", new Set(), "y.wgsl")).toThrow("y.wgsl: //#if without //#endif");
  });

  it("reads the group-0 bindings a kernel declares, with their access", () => {
    const source = `
      @group(0) @binding(0) var<uniform> params: Params;
      @group(0) @binding(2) var<storage, read_write> out: array<f32>;
      @group(0) @binding(1) var<storage, read> a: array<f32>;
      @group(0) @binding(3) var<storage> b: array<u32>;`;
    expect(declaredBindings(source)).toEqual([
      { binding: 0, kind: "uniform" },
      { binding: 1, kind: "read-only-storage" },
      { binding: 2, kind: "storage" },
      { binding: 3, kind: "read-only-storage" },
    ]);
  });
});
