/** Uploading a matrix quantized by the oracle (conformance/oracle/matmul.ts) as the contract's QuantizedMatrix. */
import type { Backend, QuantizedMatrix } from "../../backends/contract.js";
import type { QuantizedHost, ScaleDtype } from "../oracle/matmul.js";

export function uploadQuantizedMatrix(
  backend: Backend,
  host: QuantizedHost,
  rows: number,
  cols: number,
  bits: 4 | 8,
  groupSize: 32 | 64 | 128,
  scaleDtype: ScaleDtype,
): QuantizedMatrix {
  const groups = [rows, cols / groupSize];
  return {
    kind: "quantized",
    weight: backend.upload(host.weight, [rows, (cols * bits) / 32], "u32", "weights"),
    scales: backend.upload(host.scales, groups, scaleDtype, "weights"),
    biases: backend.upload(host.biases, groups, scaleDtype, "weights"),
    rows,
    cols,
    bits,
    groupSize,
  };
}
