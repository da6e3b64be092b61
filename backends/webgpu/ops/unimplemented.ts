import { UnsupportedOpError, type OpName } from "../../contract.js";

/** The body of an op this backend does not have yet: it says so by name, never computes something else. */
export function unimplemented(op: OpName): never {
  throw new UnsupportedOpError("webgpu", [op]);
}
