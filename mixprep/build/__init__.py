"""The build: a parsed mixture -> JSONL + Parquet sidecar + `.idx` + manifest.

Modules in the order data moves through them:
- `driver`: runs the stages below through an executor; `build` and `dry_run`.
- `workdir`: the output folder, the build's temporary work folder and its file layout.
- `scan`: one task's blocks -> parsed (`records`), filtered, fingerprinted records on disk.
- `records`: raw blocks -> checked records of the phase's schema and the text filters judge.
- `select`: per-source counts, dedup across sources, quotas and the seeded selection.
- `sampler`: quotas by largest remainder, bottom-k selection with wraparound (pure numpy).
- `dedup`: exact and near-duplicate fingerprints and survivors.
- `hashing`: the stable 64-bit hashes every random choice derives from.
- `shuffle`: the final order, cut into buckets and routed back to the scan tasks.
- `writers`: buckets -> JSONL + sidecar + index parts, appended and committed.
- `manifest`: what was built from what (and whether it can be reused).
- `executors`, `ray_executor`: where tasks run (this process, a pool, Ray).
"""



