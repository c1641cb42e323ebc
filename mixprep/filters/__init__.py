"""Filters: which records to keep, decided for a whole record batch at once.

Modules in the order a batch moves through them:
- `registry`: `Feature` and `FilterDef`, the `FILTERS` dict, threshold validators.
- `rules`: every named filter (length, Gopher quality and repetition, C4 flags,
  language, tokens), the presets, and `parse_filters` for a config's `filters:`.
- `engine`: a batch + a chain -> per-record removal reason (first rule that rejects).
- `fields`: the columns the compiled statistics produce (light: no numba).
- `textstats`, `langid`, `tokens`, `intrinsics`: the kernels behind the features
  (numba over the batch's Arrow buffers; py3langid's model; HF tokenizers).
- `bytelevel`, `bpe`: GPT-2-style byte-level BPE counts and ids in compiled code (the split,
  a per-process word cache, the merges), equal to the tokenizers library's; `tokens` uses them.
"""



