"""`mixprep train`: a compact GPT trained on a prepared mixture, and the tools around it.

Modules in the order a run uses them:
- `options`: command-line flags -> frozen `TrainOptions`.
- `data`: the mixture or prepared files -> tokenizer, `UnifiedDataset`s, seeded batches.
- `run`: the `Trainer` loop (schedule, accumulation, evaluation, resume); `console`: what it prints (bar, log lines, ETA).
- `model`: the GPT; `checkpoint`: atomic save/resume; `metrics`: metrics.jsonl and plots;
  `trackers`: TensorBoard and W&B (`--report_to`).
- `tokenizer`: training a byte-level BPE tokenizer with a ChatML template.
- `__main__`: `python -m mixprep.train` / `mixprep train`.
"""



