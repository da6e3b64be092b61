"""Independent oracle for tokenization and chat-template rendering: the reference Python libraries.

  python3 tokenizer_oracle.py REQUEST.json ANSWERS.json   writes the answers (libraries may print to stdout)

REQUEST: {"tokenizers": [{"name", "dir", "decode": [[id, ...], ...], "decode_only"?: true}],
          "texts": [str, ...],
          "conversations": [{"name", "messages", "tools"?, "extra"?}, ...]}

For each tokenizer directory it answers with what `tokenizers.Tokenizer.from_file` and
`transformers.AutoTokenizer.from_pretrained` compute: vocabulary size, token ids of every text with
and without special tokens, the text of every id sequence (skipping special tokens or not), and every
conversation rendered by `apply_chat_template(..., add_generation_prompt=True)` as text and as ids.
A conversation the template refuses gets {"error": message}. A "decode_only" tokenizer (one with no
chat template, used to check decoders the generator does not write) gets only the decode answers.
"""
import json
import sys

from tokenizers import Tokenizer
from transformers import AutoTokenizer


def render(auto, conversation, tokenize):
    try:
        result = auto.apply_chat_template(
            conversation["messages"],
            tools=conversation.get("tools"),
            add_generation_prompt=True,
            tokenize=tokenize,
            **conversation.get("extra", {}),
        )
    except Exception as error:  # the template's raise_exception, or a bad conversation
        return {"error": str(error)}
    if tokenize:
        return {"ids": list(result["input_ids"] if hasattr(result, "keys") else result)}
    return {"text": result}


def answer(spec, texts, conversations):
    fast = Tokenizer.from_file(f"{spec['dir']}/tokenizer.json")
    decoded = {
        "name": spec["name"],
        "decode": [fast.decode(ids, skip_special_tokens=False) for ids in spec["decode"]],
        "decode_skip": [fast.decode(ids, skip_special_tokens=True) for ids in spec["decode"]],
    }
    if spec.get("decode_only"):
        return decoded
    auto = AutoTokenizer.from_pretrained(spec["dir"])
    return {
        **decoded,
        "name": spec["name"],
        "vocab_size": fast.get_vocab_size(with_added_tokens=True),
        "transformers_len": len(auto),
        "special_tokens_map": auto.special_tokens_map,
        "encode": [fast.encode(text, add_special_tokens=True).ids for text in texts],
        "encode_plain": [fast.encode(text, add_special_tokens=False).ids for text in texts],
        "transformers_encode": [auto.encode(text) for text in texts],
        "transformers_decode": [auto.decode(ids, skip_special_tokens=False) for ids in spec["decode"]],
        "chat_text": [render(auto, conversation, False) for conversation in conversations],
        "chat_ids": [render(auto, conversation, True) for conversation in conversations],
    }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        request = json.load(handle)
    answers = [answer(spec, request["texts"], request["conversations"]) for spec in request["tokenizers"]]
    with open(sys.argv[2], "w", encoding="utf-8") as handle:
        json.dump(answers, handle, ensure_ascii=False)


if __name__ == "__main__":
    main()
