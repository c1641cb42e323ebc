"""Filters: which records to keep, decided for a whole record batch at once.

Modules in the order a batch moves through them:
- `registry`: `Feature` and `FilterDef`, the `FILTERS` dict, threshold validators.
- `rules`: every named filter (length, Gopher quality and repetition, C4 flags,
  language, tokens), the presets, and `parse_filters` for a config's `filters:`;
  `c4_filter`: the `c4` rule (line cleaning) and its settings.
- `engine`: a batch + a chain -> per-record removal reason (first rule that rejects).
- `fields`: the columns the compiled statistics produce (light: no numba).
- `textstats`: a batch's text bytes as the kernels share them (`TextBatch`) and helpers.
- `english` (+ `english_tables`): English words as spaCy splits them, compiled; `gopher`
  and `c4`: datatrove's Gopher statistics and C4 line cleaning over those words.
- `langid`, `tokens`, `intrinsics`: the other kernels behind the features
  (py3langid's model; HF tokenizers; machine operations numba lacks).
- `bytelevel`, `bpe`: GPT-2-style byte-level BPE counts and ids in compiled code (the split,
  a per-process word cache, the merges), equal to the tokenizers library's; `tokens` uses them.
"""



