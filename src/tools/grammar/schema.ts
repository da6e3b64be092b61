/**
 * JSON Schema → NFA fragment, for the schemas tools and response formats use in practice. Everything the
 * grammar lets through validates against the schema; where the schema allows more than the grammar
 * can say cheaply, the grammar allows less (never more):
 *
 *  - Objects: properties in schema order, each optional one may be skipped, required ones never.
 *    Extra properties only when `additionalProperties` is `true` or a schema (or the object declares
 *    no properties at all, e.g. `{"type": "object"}`), after the declared ones, with keys that differ
 *    from every declared name and contain no escapes. Leaving them out when the keyword is absent is
 *    still valid JSON Schema output and keeps a model from wandering into keys nobody asked for.
 *  - Arrays: `items` / `prefixItems` (and draft-07 `items: [...]` + `additionalItems`), minItems and
 *    maxItems; after `prefixItems` with no `items`, no further items.
 *  - Strings: any JSON string (escapes, UTF-8 checked byte by byte); minLength/maxLength counted in
 *    code points; `\u` escapes of surrogates are refused (characters beyond the BMP come as UTF-8).
 *    `format` is not enforced: it is an annotation in JSON Schema 2019-09 and later.
 *  - Numbers: JSON syntax with at most 16 digits before and after the point and a 2-digit exponent;
 *    integers without fraction or exponent.
 *  - enum/const: the values, each checked against the schema's other keywords.
 *  - anyOf and oneOf: the union of the branches (oneOf as anyOf: branches that overlap may produce a
 *    value that matches two of them); allOf and sibling keywords are merged into each branch.
 *  - $ref to #/$defs/… or #/definitions/…; a definition that refers to itself is expanded 3 levels
 *    deep, below which only its non-recursive alternatives remain.
 *  - Free-form values (`true`, `{}`) and json_object mode: any JSON with containers nested at most
 *    FREE_DEPTH deep.
 * Any other keyword is refused with UnsupportedSchemaError naming it (the keyword tables and schema
 * merging are in schema-keywords.ts).
 */
import { GrammarError, UnsupportedSchemaError } from "./errors.js";
import { jsonInteger, jsonNumber, jsonString, serializeJson, utf8 } from "./json-text.js";
import { NfaBuilder, type Fragment, type Nfa } from "./nfa.js";
import {
  type JsonType,
  KEYWORDS_OF,
  type Schema,
  TYPES,
  blamed,
  checkKeywords,
  constrains,
  count,
  isSchemaObject,
  merge,
  sameJson,
  typeList,
  without,
} from "./schema-keywords.js";

/** Containers nested inside a free-form value (json_object mode: the top object and 5 levels below it). */
export const FREE_DEPTH = 6;
/** Times one $ref may be expanded inside itself. */
const REF_DEPTH = 3;
/** Automaton states one grammar may have. */
export const STATE_BUDGET = 400_000;

export class SchemaCompiler {
  private readonly refDepth = new Map<string, number>();

  constructor(
    private readonly builder: NfaBuilder,
    private readonly root: unknown,
  ) {}

  /** Any JSON object (json_object mode). */
  anyObject(): Fragment {
    return this.freeObject(FREE_DEPTH);
  }

  compile(schema: unknown): Fragment {
    const builder = this.builder;
    if (schema === true) return this.anyValue(FREE_DEPTH);
    if (schema === false) return builder.never();
    if (!isSchemaObject(schema))
      throw new GrammarError(`a schema must be an object or a boolean, got ${JSON.stringify(schema)}`);
    checkKeywords(schema);
    if (!constrains(schema)) return this.anyValue(FREE_DEPTH);
    if (schema.$ref !== undefined) return this.compileRef(schema);
    if (schema.allOf !== undefined) {
      if (!Array.isArray(schema.allOf)) throw new GrammarError("allOf must be an array");
      let merged: Schema | false = without(schema, "allOf");
      for (const part of schema.allOf as unknown[]) {
        if (part === true) continue;
        if (part === false || merged === false) return builder.never();
        if (!isSchemaObject(part)) throw new GrammarError("allOf entries must be schemas");
        checkKeywords(part);
        const resolved = this.resolve(part);
        merged = resolved === false ? false : merge(merged, resolved);
      }
      return merged === false ? builder.never() : this.compile(merged);
    }
    for (const keyword of ["anyOf", "oneOf"]) {
      if (schema[keyword] === undefined) continue;
      const branches = schema[keyword];
      if (!Array.isArray(branches) || branches.length === 0)
        throw new GrammarError(`${keyword} must be a non-empty array`);
      const rest = without(schema, keyword);
      return builder.union(
        branches.map((branch: unknown) => {
          if (branch === false) return builder.never();
          if (branch === true) return this.compile(rest);
          if (!isSchemaObject(branch)) throw new GrammarError(`${keyword} entries must be schemas`);
          const merged = merge(rest, branch);
          return merged === false ? builder.never() : this.compile(merged);
        }),
      );
    }
    if (schema.nullable === true) {
      return builder.union([this.compile(without(schema, "nullable")), builder.literal(utf8("null"))]);
    }
    if (schema.enum !== undefined || schema.const !== undefined) return this.compileValues(schema);

    return builder.union(this.typesOf(schema).map((type) => this.compileType(type, schema)));
  }

  /** A schema with its $ref replaced by the definition (siblings merged in), for allOf. */
  private resolve(schema: Schema, hops = 0): Schema | false {
    if (schema.$ref === undefined) return schema;
    if (hops > 32) throw new UnsupportedSchemaError("$ref", "refers to itself through allOf");
    const target = this.definition(schema.$ref);
    if (target === true) return without(schema, "$ref");
    if (!isSchemaObject(target)) return false;
    checkKeywords(target);
    const resolved = this.resolve(target, hops + 1);
    return resolved === false ? false : merge(resolved, without(schema, "$ref"));
  }

  private definition(ref: unknown): unknown {
    if (typeof ref !== "string") throw new GrammarError("$ref must be a string");
    const match = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
    if (!match) throw new UnsupportedSchemaError("$ref", `only #/$defs/… and #/definitions/… references (got ${ref})`);
    const name = match[2]!.replace(/~1/g, "/").replace(/~0/g, "~");
    const definitions = isSchemaObject(this.root) ? this.root[match[1]!] : undefined;
    if (!isSchemaObject(definitions) || !(name in definitions)) throw new GrammarError(`$ref ${ref} points nowhere`);
    return definitions[name];
  }

  private compileRef(schema: Schema): Fragment {
    const ref = schema.$ref as string;
    const target = this.definition(ref);
    const depth = this.refDepth.get(ref) ?? 0;
    if (depth >= REF_DEPTH) return this.builder.never();
    this.refDepth.set(ref, depth + 1);
    try {
      const siblings = without(schema, "$ref");
      if (!constrains(siblings)) return blamed("$ref", () => this.compile(target));
      if (target === false) return this.builder.never();
      const merged = target === true ? siblings : merge(target as Schema, siblings);
      return merged === false ? this.builder.never() : blamed("$ref", () => this.compile(merged));
    } finally {
      this.refDepth.set(ref, depth);
    }
  }

  /** enum / const: each value in the grammar's style, kept when the schema's other keywords accept it. */
  private compileValues(schema: Schema): Fragment {
    const builder = this.builder;
    let values: unknown[];
    if (schema.const !== undefined) values = [schema.const];
    else if (Array.isArray(schema.enum)) values = schema.enum as unknown[];
    else throw new GrammarError("enum must be an array");
    if (schema.const !== undefined && schema.enum !== undefined) {
      values = values.filter((value) => (schema.enum as unknown[]).some((item) => sameJson(item, value)));
    }
    const rest = without(schema, "enum", "const");
    let check: Nfa | null = null;
    if (constrains(rest)) {
      const checker = new NfaBuilder(STATE_BUDGET);
      try {
        check = checker.finish(new SchemaCompiler(checker, this.root).compile(rest));
      } catch (error) {
        if (!(error instanceof GrammarError) || error instanceof UnsupportedSchemaError) throw error;
        return builder.never(); // the other keywords allow nothing
      }
    }
    const kept = values
      .map((value) => utf8(serializeJson(value)))
      .filter((bytes) => check === null || check.isFinal(check.run(check.initial(), bytes)));
    return kept.length === 0 ? builder.never() : builder.union(kept.map((bytes) => builder.literal(bytes)));
  }

  private typesOf(schema: Schema): JsonType[] {
    let types: JsonType[];
    if (schema.type !== undefined) {
      types = typeList(schema.type);
    } else {
      types = KEYWORDS_OF.filter(([, keywords]) => keywords.some((keyword) => keyword in schema)).map(([type]) => type);
      if (types.length === 0) types = TYPES.filter((type) => type !== "integer");
    }
    if (types.includes("number")) types = types.filter((type) => type !== "integer");
    return [...new Set(types)];
  }

  private compileType(type: JsonType, schema: Schema): Fragment {
    const builder = this.builder;
    switch (type) {
      case "string": {
        const minLength = count(schema, "minLength", 0);
        const maxLength = count(schema, "maxLength", Infinity);
        if (minLength > maxLength) return builder.never();
        return blamed(schema.maxLength !== undefined ? "maxLength" : "minLength", () =>
          jsonString(builder, { minLength, maxLength }),
        );
      }
      case "number":
        return jsonNumber(builder);
      case "integer":
        return jsonInteger(builder);
      case "boolean":
        return builder.union([builder.literal(utf8("true")), builder.literal(utf8("false"))]);
      case "null":
        return builder.literal(utf8("null"));
      case "object":
        return this.compileObject(schema);
      case "array":
        return this.compileArray(schema);
    }
  }

  private compileObject(schema: Schema): Fragment {
    const builder = this.builder;
    const properties = schema.properties ?? {};
    if (!isSchemaObject(properties)) throw new GrammarError("properties must be an object");
    const required = schema.required ?? [];
    if (!Array.isArray(required) || required.some((name) => typeof name !== "string")) {
      throw new GrammarError("required must be an array of strings");
    }
    const additional = schema.additionalProperties;
    if (additional !== undefined && typeof additional !== "boolean" && !isSchemaObject(additional)) {
      throw new GrammarError("additionalProperties must be a boolean or a schema");
    }
    const declared = Object.entries(properties);
    const extraSchema = isSchemaObject(additional) ? additional : true;
    for (const name of required as string[]) {
      if (name in properties) continue;
      if (additional === false) return builder.never();
      declared.push([name, extraSchema]);
    }
    const extras =
      additional === true || isSchemaObject(additional) || (additional === undefined && declared.length === 0);
    const mustHave = declared.map(([name]) => (required as string[]).includes(name));

    const open = builder.literal(utf8("{"));
    const close = builder.literal(utf8("}"));
    const members = declared.map(([name, propertySchema]) =>
      builder.sequence([builder.literal(utf8(`${JSON.stringify(name)}: `)), this.compile(propertySchema)]),
    );
    const afterComma = members.map((member) => builder.sequence([builder.literal(utf8(", ")), member]));
    let extra: { first: Fragment; next: Fragment } | null = null;
    if (extras) {
      const key = jsonString(builder, { minLength: 1, maxLength: Infinity, exclude: declared.map(([name]) => name) });
      const member = builder.sequence([key, builder.literal(utf8(": ")), this.compile(extraSchema)]);
      const next = builder.sequence([builder.literal(utf8(", ")), member]);
      builder.epsilon(member.end, next.start);
      builder.epsilon(member.end, close.start);
      extra = { first: member, next };
    }
    // From "nothing yet" (-1) or "member i last": any later member up to the next required one, or the end.
    for (let last = -1; last < declared.length; last++) {
      const at = last < 0 ? open.end : members[last]!.end;
      let next = last + 1;
      for (; next < declared.length; next++) {
        builder.epsilon(at, last < 0 ? members[next]!.start : afterComma[next]!.start);
        if (mustHave[next]) break;
      }
      if (next < declared.length) continue;
      builder.epsilon(at, close.start);
      if (extra) builder.epsilon(at, last < 0 ? extra.first.start : extra.next.start);
    }
    return { start: open.start, end: close.end };
  }

  private compileArray(schema: Schema): Fragment {
    const builder = this.builder;
    const tuple = Array.isArray(schema.prefixItems)
      ? schema.prefixItems
      : Array.isArray(schema.items)
        ? schema.items
        : [];
    const restKeyword = Array.isArray(schema.items) ? "additionalItems" : "items";
    // No keyword for the items after a tuple: none are produced (allowed, and what a tuple means).
    let rest: unknown = schema[restKeyword] ?? (tuple.length > 0 ? false : true);
    if (restKeyword === "additionalItems" && Array.isArray(schema.prefixItems)) rest = false;
    const minItems = count(schema, "minItems", 0);
    let maxItems = count(schema, "maxItems", Infinity);
    if (rest === false) maxItems = Math.min(maxItems, tuple.length);
    if (minItems > maxItems) return builder.never();

    const itemAt = (index: number) => this.compile(index < tuple.length ? tuple[index] : rest);
    const open = builder.literal(utf8("["));
    const close = builder.literal(utf8("]"));
    if (minItems === 0) builder.epsilon(open.end, close.start);
    if (maxItems === 0) return { start: open.start, end: close.end };
    // Items one by one up to the last that is bounded or distinct (tuple, minItems), then a loop.
    const distinct = maxItems === Infinity ? Math.max(tuple.length, minItems, 1) : maxItems;
    blamed(maxItems === Infinity ? "minItems" : "maxItems", () => {
      let at = open.end;
      for (let index = 0; index < distinct; index++) {
        const item = itemAt(index);
        builder.epsilon(at, index === 0 ? item.start : builder.sequence([builder.literal(utf8(", ")), item]).start);
        at = item.end;
        if (index + 1 >= minItems) builder.epsilon(at, close.start);
      }
      if (maxItems === Infinity) {
        const loop = builder.sequence([builder.literal(utf8(", ")), itemAt(distinct)]);
        builder.epsilon(at, loop.start);
        builder.epsilon(loop.end, at);
      }
    });
    return { start: open.start, end: close.end };
  }

  private anyValue(depth: number): Fragment {
    const builder = this.builder;
    const options = [
      jsonString(builder, { minLength: 0, maxLength: Infinity }),
      jsonNumber(builder),
      ...["true", "false", "null"].map((word) => builder.literal(utf8(word))),
    ];
    if (depth > 0) {
      options.push(this.freeObject(depth));
      options.push(this.container("[", "]", () => this.anyValue(depth - 1)));
    }
    return builder.union(options);
  }

  private freeObject(depth: number): Fragment {
    const builder = this.builder;
    const member = () =>
      builder.sequence([
        jsonString(builder, { minLength: 0, maxLength: Infinity }),
        builder.literal(utf8(": ")),
        this.anyValue(depth - 1),
      ]);
    return this.container("{", "}", member);
  }

  /** `open (item (", " item)*)? close` with one copy of the item automaton. */
  private container(open: string, close: string, item: () => Fragment): Fragment {
    const builder = this.builder;
    const opening = builder.literal(utf8(open));
    const closing = builder.literal(utf8(close));
    const member = item();
    const comma = builder.literal(utf8(", "));
    builder.epsilon(opening.end, closing.start);
    builder.epsilon(opening.end, member.start);
    builder.epsilon(member.end, comma.start);
    builder.epsilon(comma.end, member.start);
    builder.epsilon(member.end, closing.start);
    return { start: opening.start, end: closing.end };
  }
}
