/**
 * How one request uses tools and constrained output: which tools go into the prompt, which parser reads
 * tool calls out of the generated text, and which grammar (if any) limits what may be sampled.
 *
 *   tool_choice none          → no tools in the prompt, no parsing;
 *   tool_choice auto          → tools in the prompt; calls parsed, each emitted only once complete and
 *                               valid (anything malformed stays text);
 *   tool_choice any / a name  → tools in the prompt; a grammar makes the model write one valid call in
 *                               its family's syntax, so argument fragments stream as they are sampled;
 *   response_format json      → a grammar makes the reply one JSON value valid for the schema.
 */
import type { TokenConstraint } from "../engine/events.js";
import type { ModelTokenizer } from "../model/tokenizer.js";
import { grammarConstraint, jsonGrammar, toolCallGrammar, type ConstrainedTool } from "./constrained.js";
import { compileGrammar, TokenVocabulary, type CompiledGrammar, type GrammarNode } from "./grammar/index.js";
import { createToolCallParser, type ToolCallFormat, type ToolCallParser } from "./parsers/index.js";

export interface ToolRequest {
  tools: readonly ConstrainedTool[];
  toolChoice: "auto" | "none" | "required" | { name: string };
  /** OpenAI's response_format json_object (true) or json_schema (its schema); null for text. */
  responseSchema: Record<string, unknown> | true | null;
}

export interface ToolPlan {
  /** Tools to render into the prompt; null keeps them out. */
  promptTools: readonly ConstrainedTool[] | null;
  parser: ToolCallParser | null;
  constraint: TokenConstraint | null;
}

/** tool_choice asks for a call, but the model's template has no tool-call syntax we know. */
export class NoToolFormatError extends Error {
  override name = "NoToolFormatError";
}

/** Compiled grammars kept: an agent sends the same tools every turn, and a grammar carries its mask cache. */
const GRAMMARS_KEPT = 32;

/** Builds plans for one tokenizer; the vocabulary index constrained decoding needs is made once, on first use. */
export class ToolPlanner {
  private vocabulary: TokenVocabulary | null = null;
  /** Compiled grammars by their source, least recently used first. */
  private readonly grammars = new Map<string, CompiledGrammar>();

  constructor(
    private readonly tokenizer: ModelTokenizer,
    readonly format: ToolCallFormat | null,
  ) {}

  plan(request: ToolRequest): ToolPlan {
    const toolsActive = request.toolChoice !== "none" && request.tools.length > 0;
    const forced = toolsActive && request.toolChoice !== "auto";
    let constraint: TokenConstraint | null = null;
    if (forced) {
      if (!this.format) {
        throw new NoToolFormatError(
          "this model's chat template has no tool-call format this server knows, so a call cannot be forced; use tool_choice auto",
        );
      }
      const choice = request.toolChoice;
      const chosen =
        typeof choice === "object" ? request.tools.filter((tool) => tool.name === choice.name) : request.tools;
      constraint = this.constraint(toolCallGrammar(this.format, chosen));
    } else if (request.responseSchema !== null) {
      constraint = this.constraint(jsonGrammar(request.responseSchema));
    }
    const parser =
      toolsActive && this.format
        ? createToolCallParser(this.format, { tools: [...request.tools], streamArguments: forced })
        : null;
    return { promptTools: toolsActive ? request.tools : null, parser, constraint };
  }

  private constraint(node: GrammarNode): TokenConstraint {
    const { tokenizer } = this;
    this.vocabulary ??= TokenVocabulary.fromTokenizer(tokenizer);
    return grammarConstraint(this.compiled(node), this.vocabulary, [...tokenizer.eosTokenIds]);
  }

  private compiled(node: GrammarNode): CompiledGrammar {
    const key = JSON.stringify(node);
    let grammar = this.grammars.get(key);
    if (grammar) this.grammars.delete(key);
    else grammar = compileGrammar(node);
    this.grammars.set(key, grammar);
    if (this.grammars.size > GRAMMARS_KEPT) this.grammars.delete(this.grammars.keys().next().value!);
    return grammar;
  }
}
