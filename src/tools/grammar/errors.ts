/** A grammar that cannot be compiled: the protocol layer answers it with a 400. */
export class GrammarError extends Error {
  override name = "GrammarError";
}

/** A JSON-schema keyword (or keyword value) that constrained decoding cannot enforce. */
export class UnsupportedSchemaError extends GrammarError {
  override name = "UnsupportedSchemaError";

  constructor(
    readonly keyword: string,
    detail?: string,
  ) {
    super(`JSON schema keyword "${keyword}" is not supported for constrained decoding${detail ? `: ${detail}` : ""}`);
  }
}
