"""Serving a built mixture (or any JSONL) to PyTorch: torch is imported here and in train/ only.

Modules in the order a record moves through them:
- `index`: the `.idx` offset index (O(1) random access, memory-mapped).
- `dataset`: `UnifiedDataset`, one record per `__getitem__` through the index.
- `indexed`: Megatron's indexed-dataset format (`.bin` of token ids + `.idx`), which
  `build --pack` writes.
- `packed`: `PackedDataset`, fixed-length windows over a packed `.bin` (every position trains).
- `phases`: a record -> token ids and loss masks for pretrain, SFT, DPO, PPO/RLAIF.
- `tokenizer`: the adapter phases use over a Hugging Face tokenizer (prefix encoding,
  chat markers). `index`, `indexed`, `phases` and `tokenizer` import no torch.
"""



