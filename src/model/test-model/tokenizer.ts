/**
 * Generates the tokenizer of a fixture model in a real family's style, deterministically and with
 * exactly the requested number of ids (the model's vocab_size):
 *
 *  - llama (Llama 3.x) and qwen2/qwen3: byte-level BPE over GPT-2's byte↔unicode map, the family's
 *    Split regex + ByteLevel pre-tokenizer and ByteLevel decoder; llama prepends <|begin_of_text|>
 *    through a TemplateProcessing post-processor, Qwen prepends nothing.
 *  - gemma3: SentencePiece-style BPE with byte fallback (<0x00>…<0xFF>), " " normalized to "▁", and
 *    the Replace/ByteFallback/Fuse decoder; <bos> comes from the post-processor.
 *
 * Merges are learned from a small embedded corpus (tokenizer-corpus.ts). A real vocabulary is far
 * larger than what a few KB can teach, so the ids left over are filled with unused tokens named the
 * way each family names its reserved slots. Unlike the family's named special tokens these fillers
 * are plain vocabulary entries, not added tokens: transformers and @huggingface/tokenizers handle a
 * few hundred added tokens well but slow down badly with a hundred thousand, and a random-weight model
 * that samples a filler should print it rather than have it vanish as a skipped special token.
 */
import {
  byteLevelAlphabet,
  byteLevelMerges,
  sentencePieceCharacters,
  sentencePieceMerges,
  SPACE,
  takeMerges,
  type Merge,
} from "./bpe-trainer.js";
import { chatTemplateFor } from "./chat-templates.js";

export type TokenizerFamily = "llama" | "qwen2" | "qwen3" | "gemma3";

export interface TestTokenizerFiles {
  tokenizer: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  specialTokensMap?: Record<string, unknown>;
  generationConfig: { bos_token_id: number; eos_token_id: number | number[]; pad_token_id?: number };
}

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

// The pre-tokenizer patterns exactly as Llama 3 and Qwen2 ship them (Oniguruma syntax, read by the Rust
// tokenizers library); Qwen differs only in splitting numbers into single digits.
export const LLAMA3_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
export const QWEN2_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function tooSmall(family: TokenizerFamily, vocabSize: number, minimum: number): Error {
  return new Error(
    `vocabSize ${vocabSize} is too small for a ${family} tokenizer: its special, byte and character tokens need at least ${minimum} ids`,
  );
}

function addedTokenJson(token: AddedToken) {
  return {
    id: token.id,
    content: token.content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: token.special,
  };
}

/** tokenizer_config.json's view of the added tokens, which transformers reads when it rebuilds a pipeline. */
function addedTokensDecoder(added: AddedToken[]) {
  // Keyed by id, without an "id" field inside: real tokenizer_config.json files have none, and the Rust
  // library prints a warning for it.
  return Object.fromEntries(
    added.map((token) => {
      const { id: _id, ...entry } = addedTokenJson(token);
      return [String(token.id), entry];
    }),
  );
}

function bpeModel(vocab: string[], merges: Merge[], options: Record<string, unknown>) {
  return {
    type: "BPE",
    dropout: null,
    ...options,
    vocab: Object.fromEntries(vocab.map((token, id) => [token, id])),
    merges,
  };
}

function bosTemplate(bos: string, bosId: number) {
  const special = (typeId: number) => ({ SpecialToken: { id: bos, type_id: typeId } });
  const sequence = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  return {
    type: "TemplateProcessing",
    single: [special(0), sequence("A", 0)],
    pair: [special(0), sequence("A", 0), special(1), sequence("B", 1)],
    special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
  };
}

function tokenizerJson(parts: Record<string, unknown>, added: AddedToken[]) {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added.map(addedTokenJson),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    ...parts,
  };
}

// ---- Llama 3.x ----

function llamaSpecialBlock(): string[] {
  const named = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
  ];
  return [...named, ...Array.from({ length: 256 - named.length }, (_, i) => `<|reserved_special_token_${i + 3}|>`)];
}

function makeLlama(vocabSize: number): TestTokenizerFiles {
  const specials = llamaSpecialBlock(); // 256, the last ids, as in Llama 3 (128000–128255 at full size)
  const bytes = byteLevelAlphabet();
  const minimum = bytes.length + specials.length;
  if (vocabSize < minimum) throw tooSmall("llama", vocabSize, minimum);
  const { merges, tokens } = takeMerges(byteLevelMerges("{1,3}"), vocabSize - minimum);
  const fillerCount = vocabSize - minimum - tokens.length;
  // Reserved slots continue the family's numbering after the 248 in its special block.
  const fillers = Array.from({ length: fillerCount }, (_, i) => `<|reserved_special_token_${248 + i}|>`);
  const vocab = [...bytes, ...tokens, ...fillers];
  const added = specials.map((content, i) => ({ id: vocab.length + i, content, special: true }));
  const id = (content: string) => added.find((token) => token.content === content)!.id;
  const bos = "<|begin_of_text|>";
  const tokenizer = tokenizerJson(
    {
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: LLAMA3_SPLIT_PATTERN }, behavior: "Isolated", invert: false },
          { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: {
        type: "Sequence",
        processors: [
          { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
          bosTemplate(bos, id(bos)),
        ],
      },
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: bpeModel(vocab, merges, {
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: true,
      }),
    },
    added,
  );
  return {
    tokenizer,
    tokenizerConfig: {
      added_tokens_decoder: addedTokensDecoder(added),
      bos_token: bos,
      chat_template: chatTemplateFor("llama"),
      // Meta ships `true`, a BERT-era cleanup that rewrites " ." as "." and cannot be streamed; ours decode plainly.
      clean_up_tokenization_spaces: false,
      eos_token: "<|eot_id|>",
      model_input_names: ["input_ids", "attention_mask"],
      model_max_length: 131072,
      tokenizer_class: "PreTrainedTokenizerFast",
    },
    specialTokensMap: { bos_token: bos, eos_token: "<|eot_id|>" },
    generationConfig: {
      bos_token_id: id(bos),
      eos_token_id: [id("<|end_of_text|>"), id("<|eom_id|>"), id("<|eot_id|>")],
    },
  };
}

// ---- Qwen2.5 / Qwen3 ----

const QWEN_SPECIALS: Array<[string, boolean]> = [
  ["<|endoftext|>", true],
  ["<|im_start|>", true],
  ["<|im_end|>", true],
  ["<|object_ref_start|>", true],
  ["<|object_ref_end|>", true],
  ["<|box_start|>", true],
  ["<|box_end|>", true],
  ["<|quad_start|>", true],
  ["<|quad_end|>", true],
  ["<|vision_start|>", true],
  ["<|vision_end|>", true],
  ["<|vision_pad|>", true],
  ["<|image_pad|>", true],
  ["<|video_pad|>", true],
  // Qwen marks its tool and thinking markup as not special, so skip_special_tokens keeps it in the text.
  ["<tool_call>", false],
  ["</tool_call>", false],
  ["<|fim_prefix|>", false],
  ["<|fim_middle|>", false],
  ["<|fim_suffix|>", false],
  ["<|fim_pad|>", false],
  ["<|repo_name|>", false],
  ["<|file_sep|>", false],
];
const QWEN3_EXTRA_SPECIALS: Array<[string, boolean]> = [
  ["<tool_response>", false],
  ["</tool_response>", false],
  ["<think>", false],
  ["</think>", false],
];

function makeQwen(family: "qwen2" | "qwen3", vocabSize: number): TestTokenizerFiles {
  const specials = family === "qwen3" ? [...QWEN_SPECIALS, ...QWEN3_EXTRA_SPECIALS] : QWEN_SPECIALS;
  const bytes = byteLevelAlphabet();
  const minimum = bytes.length + specials.length;
  if (vocabSize < minimum) throw tooSmall(family, vocabSize, minimum);
  const { merges, tokens } = takeMerges(byteLevelMerges(""), vocabSize - minimum);
  // Qwen's special tokens follow its BPE vocabulary; ours follow the fillers, which are named like Qwen's older
  // <|extra_N|> tokens. Added tokens must come after every model id: the Rust library numbers an added token
  // that is not in the model's vocabulary from the size of that vocabulary on, whatever tokenizer.json says.
  const fillers = Array.from({ length: vocabSize - minimum - tokens.length }, (_, i) => `<|extra_${i}|>`);
  const vocab = [...bytes, ...tokens, ...fillers];
  const added = specials.map(([content, special], i) => ({ id: vocab.length + i, content, special }));
  const id = (content: string) => added.find((token) => token.content === content)!.id;
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
  const model = bpeModel(vocab, merges, {
    unk_token: null,
    continuing_subword_prefix: "",
    end_of_word_suffix: "",
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
  });
  const tokenizer = tokenizerJson(
    {
      normalizer: { type: "NFC" },
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: QWEN2_SPLIT_PATTERN }, behavior: "Isolated", invert: false },
          byteLevel,
        ],
      },
      post_processor: byteLevel,
      decoder: byteLevel,
      model,
    },
    added,
  );
  // As in Qwen's tokenizer_config.json: the special tokens other than <|endoftext|>.
  const additionalSpecialTokens = QWEN_SPECIALS.filter(
    ([content, special]) => special && content !== "<|endoftext|>",
  ).map(([content]) => content);
  return {
    tokenizer,
    tokenizerConfig: {
      add_bos_token: false,
      add_prefix_space: false,
      added_tokens_decoder: addedTokensDecoder(added),
      additional_special_tokens: additionalSpecialTokens,
      bos_token: null,
      chat_template: chatTemplateFor(family),
      clean_up_tokenization_spaces: false,
      eos_token: "<|im_end|>",
      errors: "replace",
      model_max_length: family === "qwen3" ? 40960 : 131072,
      pad_token: "<|endoftext|>",
      split_special_tokens: false,
      tokenizer_class: "Qwen2Tokenizer",
      unk_token: null,
    },
    specialTokensMap: {
      additional_special_tokens: additionalSpecialTokens,
      eos_token: "<|im_end|>",
      pad_token: "<|endoftext|>",
    },
    generationConfig: {
      bos_token_id: id("<|endoftext|>"),
      eos_token_id: [id("<|im_end|>"), id("<|endoftext|>")],
      pad_token_id: id("<|endoftext|>"),
    },
  };
}

// ---- Gemma 3 ----

function gemmaHead(): AddedToken[] {
  const head: Array<[string, boolean]> = [
    ["<pad>", true],
    ["<eos>", true],
    ["<bos>", true],
    ["<unk>", true],
    ["<mask>", true],
    ["[multimodal]", true],
    ...Array.from({ length: 99 }, (_, i): [string, boolean] => [`<unused${i}>`, false]),
    ["<start_of_turn>", true],
    ["<end_of_turn>", true],
  ];
  return head.map(([content, special], id) => ({ id, content, special }));
}

function makeGemma(vocabSize: number): TestTokenizerFiles {
  const head = gemmaHead();
  const byteTokens = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  const characters = sentencePieceCharacters();
  const imageMarkers = ["<start_of_image>", "<end_of_image>"];
  const minimum = head.length + byteTokens.length + characters.length + imageMarkers.length;
  if (vocabSize < minimum) throw tooSmall("gemma3", vocabSize, minimum);
  const { merges, tokens } = takeMerges(sentencePieceMerges(new Set(characters)), vocabSize - minimum);
  const base = [...head.map((token) => token.content), ...byteTokens, ...characters, ...tokens];
  const fillers = Array.from({ length: vocabSize - minimum - tokens.length }, (_, i) => `<unused${99 + i}>`);
  // Gemma 3 keeps its image markers 6145 ids before the end (255999 and 256000 of 262144); so do we where it fits.
  const imageAt = Math.max(base.length, vocabSize - 6145);
  const fillersBefore = imageAt - base.length;
  const vocab = [...base, ...fillers.slice(0, fillersBefore), ...imageMarkers, ...fillers.slice(fillersBefore)];
  const added = [...head, ...imageMarkers.map((content, i) => ({ id: imageAt + i, content, special: true }))];
  const bos = "<bos>";
  const tokenizer = tokenizerJson(
    {
      normalizer: { type: "Replace", pattern: { String: " " }, content: SPACE },
      // Gemma splits on " " after the normalizer has replaced every " ", so this never cuts anything; it is
      // here because Gemma's tokenizer.json (and transformers' GemmaTokenizer) carry it.
      pre_tokenizer: { type: "Split", pattern: { String: " " }, behavior: "MergedWithPrevious", invert: false },
      post_processor: bosTemplate(bos, 2),
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: SPACE }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
        ],
      },
      model: bpeModel(vocab, merges, {
        unk_token: "<unk>",
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
      }),
    },
    added,
  );
  return {
    tokenizer,
    tokenizerConfig: {
      add_bos_token: true,
      add_eos_token: false,
      added_tokens_decoder: addedTokensDecoder(added),
      additional_special_tokens: ["<start_of_turn>", "<end_of_turn>"],
      bos_token: bos,
      chat_template: chatTemplateFor("gemma3"),
      clean_up_tokenization_spaces: false,
      eos_token: "<eos>",
      model_max_length: 131072,
      pad_token: "<pad>",
      spaces_between_special_tokens: false,
      tokenizer_class: "GemmaTokenizer",
      unk_token: "<unk>",
      use_default_system_prompt: false,
    },
    specialTokensMap: {
      additional_special_tokens: ["<start_of_turn>", "<end_of_turn>"],
      bos_token: bos,
      eos_token: "<eos>",
      pad_token: "<pad>",
      unk_token: "<unk>",
    },
    generationConfig: { bos_token_id: 2, eos_token_id: [1, 106], pad_token_id: 0 },
  };
}

export function makeTestTokenizer(family: TokenizerFamily, vocabSize: number): TestTokenizerFiles {
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) {
    throw new Error(`vocabSize must be a positive integer, got ${vocabSize}`);
  }
  switch (family) {
    case "llama":
      return makeLlama(vocabSize);
    case "qwen2":
    case "qwen3":
      return makeQwen(family, vocabSize);
    case "gemma3":
      return makeGemma(vocabSize);
    default:
      throw new Error(`unknown tokenizer family ${JSON.stringify(family)} (known: llama, qwen2, qwen3, gemma3)`);
  }
}
