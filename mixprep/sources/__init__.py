"""Where records come from: a dataset's `source:` -> tasks -> Arrow record blocks.

Modules in the order data moves through them:
- `formats`: file suffix -> format (JSONL, CSV/TSV, Parquet, Arrow; compressed or not).
- `plan`: sources -> files -> `ScanTask`s (byte ranges, row groups), pure and
  independent of the worker count.
- `remote`: fsspec paths (`s3://`, `gs://`, `https://`, `hf://`), listed and read by range.
- `hub`: Hugging Face datasets (hub ids, hub-style folders, `save_to_disk` folders) -> files.
- `readers`: one task -> `LineBlock`s (JSONL) or `TableBlock`s (columnar formats).
"""



