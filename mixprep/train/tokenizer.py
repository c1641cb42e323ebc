"""Train a small byte-level BPE tokenizer with MiniMind's special tokens and a ChatML template.

Place in the flow: after `mixprep build` writes a JSONL, `python -m mixprep tokenizer
train FILE.jsonl --vocab_size 6400 --out DIR` learns a vocabulary from it; the trainer
and `UnifiedDataset` then load DIR with `AutoTokenizer.from_pretrained(DIR)`, offline.

Guarantees:
- Special ids are fixed: `<|endoftext|>`=0 (pad, unk), `<|im_start|>`=1 (bos),
  `<|im_end|>`=2 (eos), as in MiniMind, so models and datasets agree on them.
- The chat template renders ChatML (`<|im_start|>{role}\\n{content}<|im_end|>\\n` per
  message, `<|im_start|>assistant\\n` as the generation prompt), with no default system
  prompt, so SFT supervision is exactly each assistant turn's content + `<|im_end|>\\n`.
- Byte-level: any text round-trips; no unknown tokens. Training is streamed from an
  iterator, so memory does not grow with the corpus.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson

from mixprep.errors import ConfigError, RecordError, SourceError
from mixprep.flags import FlagParser

log = logging.getLogger(__name__)


PAD_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)  # ids 0, 1, 2 in this order

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Record fields whose strings (or message contents) are tokenizer training text.
TEXT_FIELDS = ("text", "prompt", "chosen", "rejected")
MESSAGE_FIELDS = ("conversations", "messages")


def train_tokenizer(texts: Iterable[str], *, vocab_size: int, out_dir: Path) -> Path:
    """Learn a byte-level BPE of `vocab_size` from `texts` and save it to `out_dir`.

    Returns `out_dir`; `AutoTokenizer.from_pretrained(out_dir)` loads the result.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    minimum = len(SPECIAL_TOKENS) + 256
    if vocab_size < minimum:
        msg = f"vocab_size={vocab_size} is too small: a byte-level BPE needs >= {minimum} (256 bytes + 3 specials)"
        raise ConfigError(msg)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        assert bpe.token_to_id(token) == expected_id, (token, bpe.token_to_id(token))

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=PAD_TOKEN,
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHATML_TEMPLATE
    wrapped.model_max_length = 32768
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(str(out_dir))
    _make_config_portable(out_dir / "tokenizer_config.json")
    log.info("saved a %d-token byte-level BPE to %s", bpe.get_vocab_size(), out_dir)
    return out_dir


def _make_config_portable(config_path: Path) -> None:
    """Let transformers 4.x load the folder too: name a class both majors know, inline the template."""
    config = orjson.loads(config_path.read_bytes())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = CHATML_TEMPLATE
    config.pop("backend", None)
    config_path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))


def iter_jsonl_texts(paths: Sequence[Path]) -> Iterator[str]:
    """Yield every training string of JSONL records: "text", prompt/chosen/rejected, message contents."""
    for path in paths:
        try:
            f = open(path, "rb")
        except OSError as e:
            msg = f"{path}: cannot read: {e.strerror}"
            raise SourceError(msg) from e
        with f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    yield from _record_texts(_parse(line, path, line_no))


def _parse(line: bytes, path: Path, line_no: int) -> dict:
    from mixprep.jsonl import load_json_object

    try:
        return load_json_object(line)
    except ValueError as exc:
        msg = f"{path}:{line_no}: {exc}; hint: each line must hold one JSON object"
        raise RecordError(msg) from None


def _record_texts(record: dict) -> Iterator[str]:
    for field in TEXT_FIELDS:
        yield from _strings(record.get(field))
    for field in MESSAGE_FIELDS:
        yield from _strings(record.get(field))


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for message in value:
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                yield message["content"]


def _parser() -> FlagParser:
    parser = FlagParser(prog="mixprep tokenizer", description="Tokenizer tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a byte-level BPE with ChatML specials on JSONL files")
    train.add_argument("files", nargs="+", type=Path, help="JSONL files (text, prompt/chosen/rejected or messages)")
    train.add_argument("--vocab_size", "--vocab-size", type=int, default=6400, help="vocabulary size (default 6400)")
    train.add_argument("--out", type=Path, required=True, help="output folder for tokenizer.json + config")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`mixprep tokenizer train FILE.jsonl [FILE ...] --vocab_size 6400 --out DIR`."""
    args = _parser().parse_args(argv)
    out = train_tokenizer(iter_jsonl_texts(args.files), vocab_size=args.vocab_size, out_dir=args.out)
    print(f"tokenizer (vocab_size <= {args.vocab_size}) saved to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
