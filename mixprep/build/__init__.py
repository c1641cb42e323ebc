"""The build: a parsed mixture -> JSONL + Parquet sidecar + `.idx` + manifest.

Modules in the order data moves through them:
- `driver`: runs the stages below through an executor; `build` and `dry_run`.
- `workdir`: the output folder, the build's temporary work folder and its file layout.
- `scan`: one task's blocks -> parsed (`records`), filtered, fingerprinted records; where each kept value is.
- `records`: raw blocks -> checked records of the phase's schema and the text filters judge.
- `strictjson`: plain JSONL texts read by one strict compiled walk into Arrow buffers (the scan's fast path).
- `rawjson`: a field's raw JSON string located in its line, and decoded again at write time.
- `decontaminate`: evaluation sets -> an n-gram table (driver); kept records that share an n-gram removed (scan).
- `ngrams`: word n-gram hashes, the table and its lookups in compiled code.
- `select`: per-source counts, dedup across sources, quotas and the seeded selection.
- `sampler`: quotas by largest remainder, bottom-k selection with wraparound (pure numpy).
- `dedup`: exact and near-duplicate fingerprints and survivors.
- `hashing`: the stable 64-bit hashes every random choice derives from.
- `shuffle`: the final order and its byte offsets, cut into write tasks (buckets).
- `encode`: output JSON lines by compiled code, each line's length known at scan time.
- `writers`: each write task fills its byte range of the final JSONL; sidecar, index.
- `sidecar`: the Parquet sidecar's tables and writer options.
- `parquet_parts`: the sidecar's Parquet parts (encoded by the write tasks) put together as one file.
- `packed`: with `pack`, each write task also fills its range of the split's token file (`.tokens.bin`); the `.idx`.
- `outputs`: the output files' names, and the commit that moves them into place.
- `contamination`: the driver's decontamination steps (index before the scan, counts after).
- `manifest`: what was built from what (and whether it can be reused).
- `card`: the output folder's dataset card (README.md) from its manifests, for `load_dataset` and the hub.
- `executors`, `ray_executor`: where tasks run (this process, a pool, Ray); `preload`: what a pool's
  fork server loads once for all its workers.
"""



