/**
 * Constrained decoding: a grammar of literal text, raw text and JSON-schema values, compiled once to a byte-level
 * automaton, and matchers that turn it into a token mask per step (see schema.ts for what JSON Schema
 * support means here, matcher.ts and vocabulary.ts for how masks stay cheap on a 262K vocabulary).
 *
 *   const grammar = compileGrammar({ kind: "sequence", items: [
 *     { kind: "literal", text: '<tool_call>\n{"name": "get_weather", "arguments": ' },
 *     { kind: "json", schema: parameters },
 *     { kind: "literal", text: "}\n</tool_call>" },
 *   ] });
 *   const vocabulary = TokenVocabulary.fromTokenizer(tokenizer); // once per tokenizer
 *   const matcher = createMatcher(grammar, vocabulary, [...tokenizer.eosTokenIds]);
 *
 * A compiled grammar may be shared by any number of matchers (and should be, for the same tools:
 * its DFA and masks are cached on it).
 */
import { LazyDfa } from "./dfa.js";
import { rawText, utf8 } from "./json-text.js";
import { CompiledGrammar } from "./matcher.js";
import { NfaBuilder, type Fragment } from "./nfa.js";
import { SchemaCompiler, STATE_BUDGET } from "./schema.js";

export { GrammarError, UnsupportedSchemaError } from "./errors.js";
export { CompiledGrammar, createMatcher, naiveMask, type GrammarMatcher, type MatcherOptions } from "./matcher.js";
export { IGNORED as ANNOTATION_KEYWORDS } from "./schema-keywords.js";
export { TokenVocabulary, type TokenizerLike } from "./vocabulary.js";

export type GrammarNode =
  | { kind: "literal"; text: string }
  /** A JSON value valid for the schema; `true`: any JSON object (json_object mode). */
  | { kind: "json"; schema: Record<string, unknown> | true }
  /**
   * Raw UTF-8 text without the `exclude` characters (ASCII only), `minLength`..`maxLength` code points
   * (defaults 0 and unbounded): a value written between tags, which an excluded `<` cannot close early.
   */
  | { kind: "text"; exclude: string; minLength?: number; maxLength?: number }
  | { kind: "sequence"; items: GrammarNode[] }
  | { kind: "choice"; options: GrammarNode[] };

function compileNode(builder: NfaBuilder, node: GrammarNode): Fragment {
  switch (node.kind) {
    case "literal":
      return builder.literal(utf8(node.text));
    case "json": {
      const compiler = new SchemaCompiler(builder, node.schema);
      return node.schema === true ? compiler.anyObject() : compiler.compile(node.schema);
    }
    case "text":
      return rawText(builder, {
        exclude: node.exclude,
        minLength: node.minLength ?? 0,
        maxLength: node.maxLength ?? Infinity,
      });
    case "sequence":
      return builder.sequence(node.items.map((item) => compileNode(builder, item)));
    case "choice":
      return builder.union(node.options.map((option) => compileNode(builder, option)));
  }
}

/** Throws UnsupportedSchemaError (a keyword it cannot enforce) or GrammarError (an invalid or empty grammar). */
export function compileGrammar(node: GrammarNode): CompiledGrammar {
  const builder = new NfaBuilder(STATE_BUDGET);
  const nfa = builder.finish(compileNode(builder, node));
  return new CompiledGrammar(nfa, new LazyDfa(nfa));
}
