/**
 * The grammar engine on the real tokenizers of generated fixture models (Llama 3 byte-level BPE, Qwen 3
 * with its <tool_call> added tokens, Gemma 3 SentencePiece with byte fallback, so tokens split UTF-8
 * characters): random token walks through the mask always end in JSON that an independent validator
 * (ajv) accepts, the mask equals a brute-force check of every token, literal + JSON sequences only
 * complete in the right shape, and keywords the grammar cannot enforce are refused by name.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { generateTestModel } from "../../src/model/test-model/generate.js";
import { loadTokenizer, type ModelTokenizer } from "../../src/model/tokenizer.js";
import {
  compileGrammar,
  createMatcher,
  GrammarError,
  naiveMask,
  TokenVocabulary,
  UnsupportedSchemaError,
  type CompiledGrammar,
  type GrammarNode,
} from "../../src/tools/grammar/index.js";
import { toolCallGrammar } from "../../src/tools/constrained.js";
import { createToolCallParser } from "../../src/tools/parsers/index.js";
import { scratchDir } from "../support/cli.js";

const FAMILIES = ["llama", "qwen3", "gemma3_text"] as const;
type Family = (typeof FAMILIES)[number];

interface Fixture {
  tokenizer: ModelTokenizer;
  vocabulary: TokenVocabulary;
  endTokenIds: number[];
}
const fixtures = {} as Record<Family, Fixture>;

beforeAll(async () => {
  for (const arch of FAMILIES) {
    const out = join(scratchDir("agent-memory-grammar-"), arch);
    await generateTestModel({ arch, out });
    const tokenizer = await loadTokenizer(out);
    fixtures[arch] = {
      tokenizer,
      vocabulary: TokenVocabulary.fromTokenizer(tokenizer),
      endTokenIds: [...tokenizer.eosTokenIds],
    };
  }
}, 120_000);

const ajv = new Ajv2020({ strict: false, allErrors: true });

const TOOL_SCHEMA = {
  type: "object",
  properties: {
    location: { type: "string", description: "City name", maxLength: 24 },
    unit: { type: "string", enum: ["celsius", "fahrenheit", "kelvin"] },
    days: { type: "integer" },
    options: {
      type: "object",
      properties: {
        detailed: { type: "boolean" },
        tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
        threshold: { type: ["number", "null"] },
      },
      required: ["detailed"],
      additionalProperties: false,
    },
    coordinates: { type: "array", prefixItems: [{ type: "number" }, { type: "number" }], minItems: 2 },
    note: { type: "string", nullable: true, minLength: 1, maxLength: 3 },
  },
  required: ["location", "unit"],
  additionalProperties: false,
};

const SHAPES_SCHEMA = {
  anyOf: [
    {
      type: "object",
      properties: { kind: { const: "circle" }, radius: { type: "number" } },
      required: ["kind", "radius"],
      additionalProperties: false,
    },
    {
      type: "object",
      properties: { kind: { const: "rect" }, w: { type: "integer" }, h: { type: "integer" } },
      required: ["kind", "w", "h"],
      additionalProperties: false,
    },
  ],
};

const REF_SCHEMA = {
  $defs: {
    point: {
      type: "object",
      properties: { x: { type: "integer" }, y: { type: "integer" } },
      required: ["x", "y"],
      additionalProperties: false,
    },
  },
  definitions: { label: { type: "string", maxLength: 5 } },
  type: "object",
  properties: {
    from: { $ref: "#/$defs/point" },
    to: { $ref: "#/$defs/point", description: "where to" },
    via: { type: "array", items: { $ref: "#/$defs/point" }, minItems: 1, maxItems: 2 },
    name: { allOf: [{ $ref: "#/definitions/label" }, { minLength: 1 }] },
  },
  required: ["from", "to"],
  additionalProperties: false,
};

const TREE_SCHEMA = {
  $defs: {
    node: {
      type: "object",
      properties: {
        value: { type: "integer" },
        children: { type: "array", items: { $ref: "#/$defs/node" }, maxItems: 2 },
      },
      required: ["value"],
      additionalProperties: false,
    },
  },
  $ref: "#/$defs/node",
};

const EXTRA_PROPERTIES_SCHEMA = {
  type: "object",
  properties: { name: { type: "string", maxLength: 8 } },
  required: ["name"],
  additionalProperties: { type: "integer" },
};

const CASES: Array<{ name: string; node: GrammarNode; oracle: object }> = [
  { name: "tool-like object", node: { kind: "json", schema: TOOL_SCHEMA }, oracle: TOOL_SCHEMA },
  { name: "json_object mode", node: { kind: "json", schema: true }, oracle: { type: "object" } },
  { name: "anyOf", node: { kind: "json", schema: SHAPES_SCHEMA }, oracle: SHAPES_SCHEMA },
  { name: "$ref, allOf", node: { kind: "json", schema: REF_SCHEMA }, oracle: REF_SCHEMA },
  { name: "recursive $ref", node: { kind: "json", schema: TREE_SCHEMA }, oracle: TREE_SCHEMA },
  {
    name: "additionalProperties schema",
    node: { kind: "json", schema: EXTRA_PROPERTIES_SCHEMA },
    oracle: EXTRA_PROPERTIES_SCHEMA,
  },
];

/** mulberry32: a small seeded PRNG, so every run walks the same tokens. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function allowedIds(mask: Uint32Array): number[] {
  const ids: number[] = [];
  for (let word = 0; word < mask.length; word++) {
    let bits = mask[word]!;
    while (bits !== 0) {
      const low = bits & -bits;
      ids.push(word * 32 + 31 - Math.clz32(low));
      bits ^= low;
    }
  }
  return ids;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

interface Walk {
  text: string;
  tokens: number[];
}

/**
 * Picks uniformly among the allowed tokens until an end token is picked; `check(step)` runs before
 * each pick with the bytes so far.
 */
function randomWalk(
  grammar: CompiledGrammar,
  fixture: Fixture,
  random: () => number,
  check?: (prefix: Uint8Array, mask: Uint32Array) => void,
): Walk {
  const matcher = createMatcher(grammar, fixture.vocabulary, fixture.endTokenIds);
  const tokens: number[] = [];
  const parts: Uint8Array[] = [];
  for (let step = 0; step < 4000; step++) {
    const mask = matcher.mask();
    check?.(concat(parts), mask);
    const ids = allowedIds(mask);
    expect(ids.length, `no token allowed after ${JSON.stringify(lenientUtf8.decode(concat(parts)))}`).toBeGreaterThan(
      0,
    );
    const id = ids[Math.floor(random() * ids.length)]!;
    const ending = fixture.endTokenIds.includes(id);
    expect(ending).toBe(matcher.isComplete() && ending);
    matcher.accept(id);
    if (ending) return { text: strictUtf8.decode(concat(parts)), tokens };
    tokens.push(id);
    parts.push(fixture.vocabulary.tokenBytes(id)!);
  }
  throw new Error("the walk did not end within 4000 tokens");
}

describe("random walks through the mask produce valid JSON", () => {
  for (const { name, node, oracle } of CASES) {
    it(name, () => {
      const validate = ajv.compile(oracle);
      const grammar = compileGrammar(node);
      const random = prng(1234);
      const distinct = new Set<string>();
      for (const family of FAMILIES) {
        for (let sample = 0; sample < 12; sample++) {
          const { text } = randomWalk(grammar, fixtures[family], random);
          const value: unknown = JSON.parse(text);
          expect(validate(value), `${family}: ${text}\n${JSON.stringify(validate.errors)}`).toBe(true);
          // One whitespace style: outside strings, one space after each `,` and `:` and none elsewhere.
          const structure = text.replace(/"(?:[^"\\]|\\.)*"/g, '""');
          expect(structure).not.toMatch(/(?<![,:]) |[,:](?! )|\s\s|[\n\r\t]/);
          distinct.add(text);
        }
      }
      expect(distinct.size).toBeGreaterThan(20);
    });
  }

  it("never emits properties the schema does not declare when additionalProperties is absent", () => {
    const schema = { type: "object", properties: { a: { type: "boolean" }, b: { type: "null" } } };
    const grammar = compileGrammar({ kind: "json", schema });
    const random = prng(7);
    const seen = new Set<string>();
    for (let sample = 0; sample < 40; sample++) {
      const { text } = randomWalk(grammar, fixtures.qwen3, random);
      seen.add(text);
    }
    const possible = [
      "{}",
      '{"a": true}',
      '{"a": false}',
      '{"b": null}',
      '{"a": true, "b": null}',
      '{"a": false, "b": null}',
    ];
    for (const text of seen) expect(possible).toContain(text);
    expect(seen.size).toBeGreaterThanOrEqual(4);
  });
});

describe("the mask is exact", () => {
  /** A token is allowed iff the bytes so far plus its bytes are a prefix of some sentence: the NFA, run from the start. */
  function bruteForce(grammar: CompiledGrammar, fixture: Fixture, prefix: Uint8Array): Uint32Array {
    const nfa = grammar.nfa;
    const mask = new Uint32Array((fixture.vocabulary.size + 31) >>> 5);
    const before = nfa.run(nfa.initial(), prefix);
    for (let id = 0; id < fixture.vocabulary.size; id++) {
      const bytes = fixture.vocabulary.tokenBytes(id);
      if (bytes === null || fixture.endTokenIds.includes(id)) continue;
      if (nfa.run(before, bytes).length > 0) mask[id >>> 5]! |= 1 << (id & 31);
    }
    const complete = nfa.isFinal(before);
    for (const id of fixture.endTokenIds) if (complete) mask[id >>> 5]! |= 1 << (id & 31);
    return mask;
  }

  for (const family of FAMILIES) {
    it(`on ${family}, at every step of walks through three schemas`, () => {
      const random = prng(99);
      let checked = 0;
      for (const schema of [TOOL_SCHEMA, SHAPES_SCHEMA, true] as const) {
        const grammar = compileGrammar({ kind: "json", schema });
        for (let sample = 0; sample < 2; sample++) {
          randomWalk(grammar, fixtures[family], random, (prefix, mask) => {
            if (checked++ % 3 !== 0) return;
            expect(allowedIds(mask)).toEqual(allowedIds(bruteForce(grammar, fixtures[family], prefix)));
            expect(mask).toEqual(naiveMask(grammar, fixtures[family].vocabulary, prefix, fixtures[family].endTokenIds));
          });
        }
      }
      expect(checked).toBeGreaterThan(50);
    });
  }

  for (const family of FAMILIES) {
    it(`on ${family}, at every step of walks through raw text between tags`, () => {
      const random = prng(5);
      const grammar = compileGrammar({
        kind: "sequence",
        items: [
          { kind: "literal", text: "<v>\n" },
          { kind: "text", exclude: "<&", minLength: 1, maxLength: 10 },
          { kind: "literal", text: "\n</v>" },
        ],
      });
      let checked = 0;
      for (let sample = 0; sample < 4; sample++) {
        randomWalk(grammar, fixtures[family], random, (prefix, mask) => {
          checked++;
          expect(allowedIds(mask)).toEqual(allowedIds(bruteForce(grammar, fixtures[family], prefix)));
        });
      }
      expect(checked).toBeGreaterThan(10);
    });
  }

  it("splits UTF-8 characters across tokens only where a continuation byte may follow", () => {
    const { tokenizer, vocabulary, endTokenIds } = fixtures.gemma3_text;
    const grammar = compileGrammar({
      kind: "json",
      schema: { type: "object", properties: { city: { type: "string" } } },
    });
    const matcher = createMatcher(grammar, vocabulary, endTokenIds);
    for (const id of tokenizer.encode('{"city": "', { addSpecialTokens: false })) matcher.accept(id);
    matcher.accept(tokenizer.tokenToId("<0xC3>")!); // the first byte of "ü"
    const allowed = allowedIds(matcher.mask());
    expect(allowed.length).toBeGreaterThan(0);
    for (const id of allowed) expect(vocabulary.tokenBytes(id)![0]).toBeGreaterThanOrEqual(0x80);
    expect(allowed).toContain(tokenizer.tokenToId("<0xBC>"));
    expect(() => matcher.accept(tokenizer.tokenToId("<0x41>")!)).toThrow(GrammarError);
    matcher.accept(tokenizer.tokenToId("<0xBC>")!);
    for (const id of tokenizer.encode('rich"}', { addSpecialTokens: false })) matcher.accept(id);
    expect(matcher.isComplete()).toBe(true);
    expect(allowedIds(matcher.mask())).toEqual([...endTokenIds].sort((a, b) => a - b));
  });
});

describe("raw text", () => {
  it("is valid UTF-8 without the excluded characters, within its length bounds in code points", () => {
    const grammar = compileGrammar({ kind: "text", exclude: "<>", minLength: 2, maxLength: 9 });
    const random = prng(31);
    const distinct = new Set<string>();
    for (const family of FAMILIES) {
      for (let sample = 0; sample < 15; sample++) {
        const { text } = randomWalk(grammar, fixtures[family], random); // decoding strictly: valid UTF-8
        expect(text).not.toMatch(/[<>]/);
        expect([...text].length, JSON.stringify(text)).toBeGreaterThanOrEqual(2);
        expect([...text].length, JSON.stringify(text)).toBeLessThanOrEqual(9);
        distinct.add(text);
      }
    }
    expect(distinct.size).toBeGreaterThan(30);
    // Newlines, quotes and backslashes are plain text here, unlike inside a JSON string.
    const nfa = grammar.nfa;
    const accepts = (text: string) => nfa.isFinal(nfa.run(nfa.initial(), new TextEncoder().encode(text)));
    expect(accepts('a\n"\\ü€😀')).toBe(true);
    expect(accepts("a")).toBe(false);
    expect(accepts("abcdefghij")).toBe(false);
    expect(accepts("a<b")).toBe(false);
    expect(nfa.run(nfa.initial(), Uint8Array.of(0x61, 0xc0)).length).toBe(0); // an overlong lead byte
    expect(nfa.run(nfa.initial(), Uint8Array.of(0x61, 0xed, 0xa0)).length).toBe(0); // a surrogate
  });

  it("without bounds takes any length, the empty text included", () => {
    const nfa = compileGrammar({ kind: "text", exclude: "<" }).nfa;
    const accepts = (text: string) => nfa.isFinal(nfa.run(nfa.initial(), new TextEncoder().encode(text)));
    expect(accepts("")).toBe(true);
    expect(accepts("x".repeat(500))).toBe(true);
    expect(accepts("x".repeat(500) + "<")).toBe(false);
  });

  it("Qwen3-Coder's forced call: its parser reads arguments valid for the schema, JSON only where the schema has no string", () => {
    const tools = [
      {
        name: "edit_file",
        parameters: {
          type: "object",
          properties: {
            path: { type: "string", maxLength: 12 },
            mode: { type: "string", enum: ["append", "replace"] },
            line: { type: "integer", minimum: 1, maximum: 9 },
            dry_run: { type: "boolean" },
            range: { type: "array", items: { type: "integer" }, maxItems: 2 },
            note: { type: ["string", "null"], maxLength: 4 },
            comment: { type: "string" },
          },
          required: ["path", "mode", "line", "dry_run", "range", "note"],
          additionalProperties: false,
        },
      },
      {
        name: "noop",
        parameters: { type: "object", properties: {} },
      },
    ];
    const grammar = compileGrammar(toolCallGrammar("qwen3_coder", tools));
    const validate = ajv.compile(tools[0]!.parameters);
    const random = prng(77);
    const names = new Set<string>();
    for (let sample = 0; sample < 20; sample++) {
      const { text } = randomWalk(grammar, fixtures.qwen3, random);
      expect(text).toMatch(/^<tool_call>\n<function=(edit_file|noop)>\n[^]*<\/function>\n<\/tool_call>$/);
      const parser = createToolCallParser("qwen3_coder", { tools, streamArguments: true });
      const events = [...parser.push(text), ...parser.finish()];
      expect(events.filter((event) => event.type === "text")).toEqual([]);
      const ends = events.filter((event) => event.type === "tool_call_end");
      expect(ends, text).toHaveLength(1);
      const start = events.find((event) => event.type === "tool_call_start")!;
      names.add(start.name);
      if (start.name === "edit_file") {
        expect(validate(ends[0]!.arguments), `${text}\n${JSON.stringify(validate.errors)}`).toBe(true);
        expect(Object.keys(ends[0]!.arguments)).toEqual(["path", "mode", "line", "dry_run", "range", "note"]);
      } else expect(ends[0]!.arguments).toEqual({});
    }
    expect(names).toEqual(new Set(["edit_file", "noop"]));
  });

  it("Qwen3-Coder's forced call refuses, by name, keywords raw text cannot enforce", () => {
    const tool = {
      name: "find",
      parameters: { type: "object", properties: { q: { type: "string", pattern: "^a" } }, required: ["q"] },
    };
    expect(() => toolCallGrammar("qwen3_coder", [tool])).toThrow(UnsupportedSchemaError);
    expect(() => toolCallGrammar("qwen3_coder", [tool])).toThrow(/"pattern"/);
  });

  it("can only exclude ASCII characters", () => {
    expect(() => compileGrammar({ kind: "text", exclude: "é" })).toThrow(GrammarError);
  });
});

describe("literal text around JSON", () => {
  const WEATHER = {
    type: "object",
    properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["c", "f"] } },
    required: ["city"],
    additionalProperties: false,
  };
  const TIME = {
    type: "object",
    properties: { zone: { type: "string", maxLength: 8 } },
    required: ["zone"],
    additionalProperties: false,
  };
  const tools: Record<string, object> = { get_weather: WEATHER, get_time: TIME };
  const call = (name: string, schema: Record<string, unknown>): GrammarNode => ({
    kind: "sequence",
    items: [
      { kind: "literal", text: `<tool_call>\n{"name": "${name}", "arguments": ` },
      { kind: "json", schema },
      { kind: "literal", text: "}\n</tool_call>" },
    ],
  });
  const anyTool: GrammarNode = {
    kind: "choice",
    options: Object.entries(tools).map(([name, schema]) => call(name, schema as Record<string, unknown>)),
  };

  it("completes only as a call of one of the tools with valid arguments", () => {
    const grammar = compileGrammar(anyTool);
    const random = prng(42);
    const names = new Set<string>();
    for (const family of FAMILIES) {
      for (let sample = 0; sample < 10; sample++) {
        const { text } = randomWalk(grammar, fixtures[family], random);
        const match = /^<tool_call>\n(\{.*\})\n<\/tool_call>$/s.exec(text);
        expect(match, text).not.toBeNull();
        const parsed = JSON.parse(match![1]!) as { name: string; arguments: unknown };
        expect(Object.keys(parsed)).toEqual(["name", "arguments"]);
        expect(ajv.validate(tools[parsed.name]!, parsed.arguments), text).toBe(true);
        names.add(parsed.name);
      }
    }
    expect([...names].sort()).toEqual(["get_time", "get_weather"]);
  });

  it("accepts the tokenizer's own encoding of a valid call and refuses a wrong one", () => {
    const grammar = compileGrammar(anyTool);
    for (const family of FAMILIES) {
      const { tokenizer, vocabulary, endTokenIds } = fixtures[family];
      const valid = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich", "unit": "c"}}\n</tool_call>';
      const matcher = createMatcher(grammar, vocabulary, endTokenIds);
      for (const id of tokenizer.encode(valid, { addSpecialTokens: false })) {
        expect(allowedIds(matcher.mask())).toContain(id);
        expect(matcher.isComplete()).toBe(false);
        matcher.accept(id);
      }
      expect(matcher.isComplete()).toBe(true);
      matcher.accept(endTokenIds[0]!);
      expect(() => matcher.accept(endTokenIds[0]!)).toThrow(GrammarError);

      for (const wrong of [
        '<tool_call>\n{"name": "get_date", "arguments": {}}\n</tool_call>', // no such tool
        '<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n</tool_call>', // the other tool's arguments
        '<tool_call>\n{"name": "get_weather", "arguments": {"city":"Oslo"}}\n</tool_call>', // whitespace style
        '<tool_call>\n{"name": "get_weather", "arguments": {"unit": "c"}}\n</tool_call>', // required city missing
      ]) {
        const refusing = createMatcher(grammar, vocabulary, endTokenIds);
        expect(() => {
          for (const id of tokenizer.encode(wrong, { addSpecialTokens: false })) refusing.accept(id);
          refusing.accept(endTokenIds[0]!);
        }, `${family}: ${wrong}`).toThrow(GrammarError);
      }
    }
  });

  it("a named tool: only that tool", () => {
    const grammar = compileGrammar(call("get_time", TIME));
    const random = prng(5);
    for (let sample = 0; sample < 10; sample++) {
      const { text } = randomWalk(grammar, fixtures.llama, random);
      expect(text.startsWith('<tool_call>\n{"name": "get_time", "arguments": {"zone": "')).toBe(true);
    }
  });
});

describe("schemas the grammar cannot enforce", () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ["pattern", { type: "object", properties: { id: { type: "string", pattern: "^[a-z]+$" } } }],
    ["minimum", { type: "object", properties: { n: { type: "integer", minimum: 1 } } }],
    ["not", { not: { type: "string" } }],
    ["if", { type: "object", if: { required: ["a"] }, then: { required: ["b"] } }],
    ["patternProperties", { type: "object", patternProperties: { "^x": { type: "string" } } }],
    ["uniqueItems", { type: "array", items: { type: "string" }, uniqueItems: true }],
    ["$ref", { type: "object", properties: { a: { $ref: "https://example.com/a.json" } } }],
    ["multipleOf", { type: "array", items: { anyOf: [{ type: "number", multipleOf: 2 }] } }],
  ];
  for (const [keyword, schema] of cases) {
    it(`${keyword} is refused by name`, () => {
      let error: unknown;
      try {
        compileGrammar({ kind: "json", schema });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(UnsupportedSchemaError);
      expect((error as UnsupportedSchemaError).keyword).toBe(keyword);
      expect((error as Error).message).toContain(keyword);
    });
  }

  it("a string longer than the grammar can count names maxLength", () => {
    expect(() => compileGrammar({ kind: "json", schema: { type: "string", maxLength: 1_000_000 } })).toThrow(
      expect.objectContaining({ keyword: "maxLength" }),
    );
  });

  it("a schema that allows nothing is a GrammarError", () => {
    expect(() =>
      compileGrammar({ kind: "json", schema: { type: "object", properties: { a: false }, required: ["a"] } }),
    ).toThrow(GrammarError);
  });
});
