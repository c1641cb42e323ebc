"""Every named filter, the presets that expand into them, and parsing a `filters:` mapping.

Each rule registers a threshold validator and a keep expression (see `registry`).
Presets expand at parse time into their component filters, so every removal is
blamed on a named rule: `quality: gopher` is min_words 50 ... min_stop_words 2, and
an explicit component in the same mapping overrides the preset's threshold.
Options (`min_language_score`, `language_prefix_bytes`, `tokenizer`) belong to a filter
and are folded into its threshold; an option without its filter is a config error.

Definitions: the Gopher filters (Rae et al. 2021) and `c4` (Raffel et al. 2020) are
Hugging Face datatrove's (`fields.REFERENCE`), computed compiled in `gopher` and `c4`
over English words as spaCy splits them (`english`); lines are `str.splitlines()`;
a fraction whose denominator is 0 (no words, no lines) is 0. Language identification
is `langid`, token counts `tokens`; those modules load lazily, when a batch first needs
them, so parsing a config stays light.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from mixprep.filters import c4_filter  # noqa: F401 - registers `c4`
from mixprep.filters.fields import (
    DUPLICATE_NGRAM_SIZES,
    GOPHER_STOP_WORDS,
    LANGUAGE_PREFIX_BYTES,
    QUALITY_FIELDS,
    REPETITION_FIELDS,
    TOP_NGRAM_SIZES,
)
from mixprep.filters.registry import (
    FILTERS,
    TEXT,
    Feature,
    FilterChain,
    column,
    flag,
    fraction,
    fractions_by_size,
    non_negative_int,
    non_negative_number,
    ratio,
    register,
)

if TYPE_CHECKING:
    from mixprep.filters.textstats import TextBatch


# -- shared features ---------------------------------------------------------

def _characters(batch: TextBatch, rows: np.ndarray) -> pl.Series:
    """Characters per text: counted in the batch's buffers where it has them (a build's
    JSONL batches), else by polars (copying the texts for a kernel would cost more)."""
    if batch.has_buffers:
        from mixprep.filters.textstats import character_counts

        return pl.Series(character_counts(batch, rows).astype(np.uint32))
    return batch.texts_at(rows).str.len_chars().fill_null(0)


CHARS = Feature("__chars", compute=_characters)


def _quality_struct(batch: TextBatch, rows: np.ndarray) -> pl.Series:
    from mixprep.filters.gopher import quality_counts

    counts = quality_counts(batch, rows)
    return pl.DataFrame({name: counts[:, i] for i, name in enumerate(QUALITY_FIELDS)}).to_struct()


def _repetition_struct(batch: TextBatch, rows: np.ndarray) -> pl.Series:
    from mixprep.filters.gopher import repetition

    fractions = repetition(batch, rows)
    return pl.DataFrame({name: fractions[:, i] for i, name in enumerate(REPETITION_FIELDS)}).to_struct()

# One compiled pass over each text gives every count the quality filters read (`gopher`).
QUALITY = Feature("__quality", compute=_quality_struct)
REPETITION = Feature("__repetition", compute=_repetition_struct, costly=True)


def count(name: str) -> pl.Expr:
    """One of the QUALITY counts per text."""
    return pl.col(QUALITY.name).struct.field(name)


# -- length filters -------------------------------------------------------

@register("min_chars", non_negative_int, "drop texts with fewer than N characters", needs=(CHARS,))
def _min_chars(n: int) -> pl.Expr:
    return column(CHARS) >= n


@register("max_chars", non_negative_int, "drop texts with more than N characters", needs=(CHARS,))
def _max_chars(n: int) -> pl.Expr:
    return column(CHARS) <= n


@register("min_words", non_negative_int, "drop texts with fewer than N words (English words as spaCy splits them; "
          "words made only of punctuation not counted)", needs=(QUALITY,))
def _min_words(n: int) -> pl.Expr:
    return count("words") >= n


@register("max_words", non_negative_int, "drop texts with more than N words (as min_words counts them)", needs=(QUALITY,))
def _max_words(n: int) -> pl.Expr:
    return count("words") <= n


# -- Gopher quality ---------------------------------------------------------

def mean_word_length() -> pl.Expr:
    return ratio(count("word_chars"), count("words"))


@register("min_mean_word_length", non_negative_number,
          "drop texts whose mean word length (characters of the words min_words counts) is below X",
          needs=(QUALITY,))
def _min_mean_word_length(x: float) -> pl.Expr:
    return mean_word_length() >= x


@register("max_mean_word_length", non_negative_number,
          "drop texts whose mean word length (characters of the words min_words counts) is above X",
          needs=(QUALITY,))
def _max_mean_word_length(x: float) -> pl.Expr:
    return mean_word_length() <= x


@register("max_symbol_word_ratio", non_negative_number,
          "drop texts with more than X '#' per word, or more than X ellipses ('...' or '…') per word (words with marks)",
          needs=(QUALITY,))
def _max_symbol_word_ratio(x: float) -> pl.Expr:
    # Gopher: "a symbol-to-word ratio greater than 0.1 for either the hash symbol or the ellipsis".
    return (ratio(count("hashes"), count("tokens")) <= x) & (ratio(count("ellipses"), count("tokens")) <= x)


@register("max_bullet_line_fraction", fraction, "drop texts where more than X of the lines (blank ones too) start with '•' or '-' "
          "after leading whitespace",
          needs=(QUALITY,))
def _max_bullet_line_fraction(x: float) -> pl.Expr:
    return ratio(count("bullet_lines"), count("lines")) <= x


@register("max_ellipsis_line_fraction", fraction, "drop texts where more than X of the lines (blank ones too) end with '...' or '…' "
          "before trailing whitespace",
          needs=(QUALITY,))
def _max_ellipsis_line_fraction(x: float) -> pl.Expr:
    return ratio(count("ellipsis_lines"), count("lines")) <= x


@register("min_alpha_word_fraction", fraction, "drop texts where fewer than X of the words (marks too) contain an alphabetic character",
          needs=(QUALITY,))
def _min_alpha_word_fraction(x: float) -> pl.Expr:
    return ratio(count("alpha_words"), count("tokens")) >= x


@register("min_stop_words", non_negative_int,
          f"drop texts with fewer than N distinct Gopher stop words ({', '.join(GOPHER_STOP_WORDS)}; as written, lower case)",
          needs=(QUALITY,))
def _min_stop_words(n: int) -> pl.Expr:
    return count("stop_words") >= n


# -- Gopher repetition ----------------------------------------------------------

def _repeated(field: str) -> pl.Expr:
    return column(REPETITION).struct.field(field)


@register("max_duplicate_paragraph_fraction", fraction,
          "drop texts where more than X of the paragraphs (split at blank lines) repeat an earlier one", needs=(REPETITION,))
def _max_duplicate_paragraph_fraction(x: float) -> pl.Expr:
    return _repeated("paragraph") <= x


@register("max_duplicate_paragraph_char_fraction", fraction,
          "drop texts where paragraphs repeating an earlier one hold more than X of the characters", needs=(REPETITION,))
def _max_duplicate_paragraph_char_fraction(x: float) -> pl.Expr:
    return _repeated("paragraph_chars") <= x


@register("max_duplicate_line_fraction", fraction, "drop texts where more than X of the lines repeat an earlier line",
          needs=(REPETITION,))
def _max_duplicate_line_fraction(x: float) -> pl.Expr:
    return _repeated("line") <= x


@register("max_duplicate_line_char_fraction", fraction,
          "drop texts where lines repeating an earlier one hold more than X of the characters", needs=(REPETITION,))
def _max_duplicate_line_char_fraction(x: float) -> pl.Expr:
    return _repeated("line_chars") <= x


@register("max_top_ngram_fraction", fractions_by_size(TOP_NGRAM_SIZES),
          "drop texts where the most frequent n-gram of words (n=2..4) times its count covers more than X of the characters",
          needs=(REPETITION,))
def _max_top_ngram_fraction(limits: tuple[tuple[int, float], ...]) -> pl.Expr:
    return pl.all_horizontal([_repeated(f"top_{n}") <= x for n, x in limits])


@register("max_duplicate_ngram_fraction", fractions_by_size(DUPLICATE_NGRAM_SIZES),
          "drop texts where n-grams of words (n=5..10) repeating an earlier one cover more than X of the characters",
          needs=(REPETITION,))
def _max_duplicate_ngram_fraction(limits: tuple[tuple[int, float], ...]) -> pl.Expr:
    return pl.all_horizontal([_repeated(f"duplicate_{n}") <= x for n, x in limits])


# -- C4 -------------------------------------------------------------------------

def _when_on(enabled: bool, keep: pl.Expr) -> pl.Expr:
    return keep if enabled else pl.lit(True)


@register("drop_lorem_ipsum", flag, "drop texts containing 'lorem ipsum' (any case)")
def _drop_lorem_ipsum(enabled: bool) -> pl.Expr:
    return _when_on(enabled, ~pl.col(TEXT).str.contains(r"(?i)lorem ipsum"))


@register("drop_curly_brace", flag, "drop texts containing '{' (C4: code and templates)")
def _drop_curly_brace(enabled: bool) -> pl.Expr:
    return _when_on(enabled, ~pl.col(TEXT).str.contains("{", literal=True))


# C4 drops lines that mention JavaScript; as a record filter, mixprep drops texts with a
# line that mentions it together with what such notices say (enable, disabled, browser...).
JAVASCRIPT_NOTICE = (
    r"(?i)javascript[^\n]*(?:enabl|disabl|browser|turn(?:ed)? on|requir|support)"
    r"|(?:enabl|disabl|browser|turn(?:ed)? on|requir|support)[^\n]*javascript"
)


@register("drop_javascript_notice", flag, "drop texts with a line asking to enable JavaScript (C4)")
def _drop_javascript_notice(enabled: bool) -> pl.Expr:
    return _when_on(enabled, ~pl.col(TEXT).str.contains(JAVASCRIPT_NOTICE))


@register("min_terminal_punctuation_line_fraction", fraction,
          "drop texts where fewer than X of the lines end with terminal punctuation (. ! ? \" ' ” ’ …)",
          needs=(QUALITY,))
def _min_terminal_punctuation_line_fraction(x: float) -> pl.Expr:
    return ratio(count("terminal_lines"), count("lines")) >= x


@dataclass(frozen=True)
class LanguageSpec:
    languages: tuple[str, ...]
    min_score: float = 0.0
    """`min_language_score`: the identifier's probability for the detected language."""
    prefix_bytes: int = LANGUAGE_PREFIX_BYTES
    """`language_prefix_bytes`: how much of each text is classified (`langid`)."""


def parse_languages(value: Any) -> LanguageSpec:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(code, str) for code in value):
        msg = f"expected a list of ISO 639 language codes such as [en, de], got {value!r}"
        raise ValueError(msg)
    from mixprep.filters.langid import known_languages

    known = known_languages()
    unknown = [code for code in value if code not in known]
    if unknown:
        msg = f"unknown language code(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        raise ValueError(msg)
    return LanguageSpec(languages=tuple(dict.fromkeys(value)))


def language_feature(prefix_bytes: int = LANGUAGE_PREFIX_BYTES) -> Feature:
    def language_struct(batch: TextBatch, rows: np.ndarray) -> pl.Series:
        from mixprep.filters.langid import language_fields

        return language_fields(batch, prefix_bytes, rows).to_struct()

    suffix = "" if prefix_bytes == LANGUAGE_PREFIX_BYTES else f"[{prefix_bytes}]"
    return Feature(f"__language{suffix}", compute=language_struct, costly=True)


def language_prefix_of(chain: FilterChain) -> int:
    """The prefix the chain's `languages` filter reads (the default without one): what
    `annotate_language` classifies, so an annotation never disagrees with the filter."""
    specs = [threshold for name, threshold in chain if name == "languages"]
    return specs[0].prefix_bytes if specs else LANGUAGE_PREFIX_BYTES


def _language_needs(spec: LanguageSpec) -> tuple[Feature, ...]:
    return (language_feature(spec.prefix_bytes),)


@register("languages", parse_languages,
          "keep texts identified as one of these languages (py3langid), with min_language_score as the least probability",
          needs=_language_needs)
def _languages(spec: LanguageSpec) -> pl.Expr:
    detected = column(language_feature(spec.prefix_bytes))
    return detected.struct.field("language").is_in(spec.languages) & (detected.struct.field("language_score") >= spec.min_score)


# -- tokens -------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenLimit:
    limit: int
    tokenizer: str
    """Path to a tokenizer.json or a folder holding one (`tokens`)."""


def token_feature(tokenizer: str) -> Feature:
    from mixprep.filters.tokens import token_counts

    def tokens(batch: TextBatch, rows: np.ndarray) -> pl.Series:
        return pl.Series(token_counts(batch.texts_at(rows), tokenizer), dtype=pl.Int64)

    return Feature(f"__tokens[{tokenizer}]", compute=tokens, costly=True)


def _token_needs(limit: TokenLimit) -> tuple[Feature, ...]:
    return (token_feature(limit.tokenizer),)


def _token_limit(value: Any) -> TokenLimit:
    # The tokenizer is filled in by parse_filters from the `tokenizer:` option.
    return TokenLimit(limit=non_negative_int(value), tokenizer="")


@register("min_tokens", _token_limit, "drop texts with fewer than N tokens (needs `tokenizer:`)", needs=_token_needs)
def _min_tokens(limit: TokenLimit) -> pl.Expr:
    return pl.col(token_feature(limit.tokenizer).name) >= limit.limit


@register("max_tokens", _token_limit, "drop texts with more than N tokens (needs `tokenizer:`)", needs=_token_needs)
def _max_tokens(limit: TokenLimit) -> pl.Expr:
    return pl.col(token_feature(limit.tokenizer).name) <= limit.limit


# -- presets and options ---------------------------------------------------------------

GOPHER_QUALITY: dict[str, Any] = {
    "min_words": 50,
    "max_words": 100_000,
    "min_mean_word_length": 3,
    "max_mean_word_length": 10,
    "max_symbol_word_ratio": 0.1,
    "max_bullet_line_fraction": 0.9,
    "max_ellipsis_line_fraction": 0.3,
    "min_alpha_word_fraction": 0.8,
    "min_stop_words": 2,
}
GOPHER_REPETITION: dict[str, Any] = {  # datatrove's order, so a removal is blamed on the rule it names
    "max_duplicate_paragraph_fraction": 0.30,
    "max_duplicate_paragraph_char_fraction": 0.20,
    "max_duplicate_line_fraction": 0.30,
    "max_duplicate_line_char_fraction": 0.20,
    "max_top_ngram_fraction": {2: 0.20, 3: 0.18, 4: 0.16},
    "max_duplicate_ngram_fraction": {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
}
REFERENCE_FILTERS = frozenset([*GOPHER_QUALITY, *GOPHER_REPETITION, "c4"])
"""Filters that reproduce datatrove's definitions (`fields.REFERENCE`, recorded in the manifest)."""
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "quality": {"gopher": GOPHER_QUALITY},
    "repetition": {"gopher": GOPHER_REPETITION},
}
"""Preset key -> preset name -> the component filters it expands into, in order."""

OPTIONS: dict[str, tuple[str, ...]] = {
    "min_language_score": ("languages",),
    "language_prefix_bytes": ("languages",),
    "tokenizer": ("min_tokens", "max_tokens"),
}
"""Option key -> the filters it configures (it is an error without one of them)."""


def _non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"expected a path to a tokenizer.json or a folder holding one, got {value!r}"
        raise ValueError(msg)
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"expected a positive number of bytes, got {value!r}"
        raise ValueError(msg)
    return value


OPTION_PARSERS: dict[str, Callable[[Any], Any]] = {
    "min_language_score": fraction,
    "language_prefix_bytes": _positive_int,
    "tokenizer": _non_empty_string,
}


def _apply_option(option: str, value: Any, threshold: Any) -> Any:
    if option == "min_language_score":
        return dataclasses.replace(threshold, min_score=value)
    if option == "language_prefix_bytes":
        return dataclasses.replace(threshold, prefix_bytes=value)
    return TokenLimit(limit=threshold.limit, tokenizer=value)


def unknown_filter_message(name: Any, key_path: str) -> str:
    valid = sorted([*FILTERS, *PRESETS, *OPTIONS])
    hint = difflib.get_close_matches(str(name), valid, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"{key_path}.{name}: unknown filter{did_you_mean}; valid filters: {', '.join(valid)}"


def _expand_presets(raw: Mapping[str, Any], key_path: str, problems: list[str]) -> list[tuple[str, Any]]:
    """Replace each preset key by its components; explicit keys in `raw` win over a preset's."""
    entries: list[tuple[str, Any]] = []
    for name, value in raw.items():
        if name not in PRESETS:
            entries.append((name, value))
            continue
        presets = PRESETS[name]
        if value not in presets:
            problems.append(f"{key_path}.{name}: unknown preset {value!r}; valid presets: {', '.join(sorted(presets))}")
            continue
        entries.extend((component, limit) for component, limit in presets[value].items() if component not in raw)
    return entries


def parse_filters(raw: Mapping[str, Any], key_path: str) -> tuple[FilterChain, list[str]]:
    """Validate a `filters:` mapping. Returns the chain and every problem found."""
    chain: list[tuple[str, Any]] = []
    problems: list[str] = []
    for name, value in _expand_presets(raw, key_path, problems):
        if name in OPTIONS:
            continue
        spec = FILTERS.get(name)
        if spec is None:
            problems.append(unknown_filter_message(name, key_path))
            continue
        try:
            chain.append((name, spec.parse(value)))
        except ValueError as exc:
            problems.append(f"{key_path}.{name}: {exc}")
    chain = _fold_options(raw, chain, key_path, problems)
    return tuple(chain), problems


def _fold_options(raw: Mapping[str, Any], chain: list[tuple[str, Any]], key_path: str, problems: list[str]) -> list[tuple[str, Any]]:
    """Fold option keys into their filters' thresholds; report options without a filter, and vice versa."""
    for option, owners in OPTIONS.items():
        present = [name for name in owners if name in raw]
        if option not in raw:
            if option == "tokenizer" and present:
                problems.append(
                    f"{key_path}.{present[0]}: needs 'tokenizer: <path to a tokenizer.json or its folder>' in the same filters mapping"
                )
            continue
        if not present:
            problems.append(
                f"{key_path}.{option}: only valid together with {' or '.join(map(repr, owners))} in the same filters mapping"
            )
            continue
        try:
            value = OPTION_PARSERS[option](raw[option])
        except ValueError as exc:
            problems.append(f"{key_path}.{option}: {exc}")
            continue
        chain = [(name, _apply_option(option, value, threshold) if name in owners else threshold) for name, threshold in chain]
    return chain


def merge_chains(global_chain: FilterChain, local_chain: FilterChain) -> FilterChain:
    """Global filters first, then per-dataset ones; a per-dataset threshold wins."""
    local = dict(local_chain)
    merged = [(name, local.pop(name) if name in local else value) for name, value in global_chain]
    merged.extend((name, value) for name, value in local_chain if name in local)
    return tuple(merged)
