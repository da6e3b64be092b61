import { describe, expect, it } from "vitest";
import { OP_NAMES, UnsupportedOpError, requireOps, type Backend, type OpName } from "../../backends/contract.js";
import { WebGpuBackend } from "../../backends/webgpu/backend.js";

describe("backend contract", () => {
  it("names every op a model needs that the backend lacks, and only those", () => {
    const partial = { name: "partial", supportedOps: new Set<OpName>(["matmul", "rms_norm"]) } as unknown as Backend;
    expect(() => requireOps(partial, ["matmul", "rope", "attention", "rope"])).toThrow(
      new UnsupportedOpError("partial", ["rope", "attention"]),
    );
    expect(() => requireOps(partial, ["matmul", "rms_norm"])).not.toThrow();
  });

  it("the WebGPU backend implements every op of the contract", async () => {
    const backend = await WebGpuBackend.create();
    expect([...OP_NAMES].filter((op) => !backend.supportedOps.has(op))).toEqual([]);
    backend.dispose();
  });
});
