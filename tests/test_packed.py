"""Packed output (`metadata.pack`, `build --pack`): every split's records as token ids in
Megatron's indexed-dataset format, served by `PackedDataset` and trained on by `--packed`;
and the per-source `max_tokens` cap."""
from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import build, manifest_of, mixture, read_jsonl, train_byte_level_bpe, write_jsonl

from mixprep.cli import main
from mixprep.config import load_mixture
from mixprep.errors import ConfigError, SourceError
from mixprep.verify import verify

EOD = "<|endoftext|>"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE tokenizer trained here, `<|endoftext|>` (id 0) its bos and eos."""
    folder = tmp_path_factory.mktemp("tokenizer")
    corpus = ["the story of a cat and a dog", "notes on parsing JSON lines é 中文"] * 50
    train_byte_level_bpe(folder, corpus, vocab_size=400, special_tokens=[EOD])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOD, "eos_token": EOD}  # as save_pretrained writes
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def encode(tokenizer: Path, text: str) -> list[int]:
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(tokenizer / "tokenizer.json")).encode(text, add_special_tokens=False).ids


def stories(folder: Path, n: int = 300) -> None:
    write_jsonl(folder / "stories.jsonl", [{"text": f"{i} the story of a cat " * (1 + i % 7)} for i in range(n)])
    write_jsonl(folder / "notes.jsonl", [{"text": f"notes {i} on parsing JSON lines é 中文"} for i in range(n)])


def packed_mixture(folder: Path, tokenizer: Path, **metadata: object) -> Path:
    stories(folder)
    metadata.setdefault("pack", {"seq_len": 16})
    return mixture(
        folder,
        [{"name": "stories", "mix_ratio": 0.7, "source": "stories.jsonl"}, {"name": "notes", "mix_ratio": 0.3, "source": "notes.jsonl"}],
        tokenizer=str(tokenizer),
        validation={"samples": 20},
        **metadata,
    )


def read_megatron(prefix: Path) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse `.idx` + `.bin` by the format as Megatron-LM's indexed_dataset.py defines it
    (written out here, independent of mixprep's reader)."""
    raw = prefix.with_name(prefix.name + ".idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    version, code, sequences, documents = struct.unpack_from("<QBQQ", raw, 9)
    assert version == 1
    at = 9 + 8 + 1 + 8 + 8
    lengths = np.frombuffer(raw, "<i4", sequences, at)
    pointers = np.frombuffer(raw, "<i8", sequences, at + 4 * sequences)
    doc_index = np.frombuffer(raw, "<i8", documents, at + 12 * sequences)
    dtype = {8: np.uint16, 4: np.int32}[code]
    ids = np.fromfile(prefix.with_name(prefix.name + ".bin"), dtype=dtype)
    return code, lengths, pointers, doc_index, ids


def test_each_split_is_its_jsonl_records_as_ids_each_followed_by_eod(tmp_path: Path, tokenizer: Path) -> None:
    result = build(packed_mixture(tmp_path, tokenizer), tmp_path / "out")
    eod = encode(tokenizer, EOD)
    assert eod == [0]
    assert set(result.files) == {"train", "validation"}
    for jsonl in result.files.values():
        prefix = jsonl.with_name(jsonl.name.removesuffix(".jsonl") + ".tokens")
        code, lengths, pointers, doc_index, ids = read_megatron(prefix)
        records = read_jsonl(jsonl)
        expected = [encode(tokenizer, r["text"]) + eod for r in records]
        assert code == 8 and ids.dtype == np.uint16  # a 400-token vocabulary fits uint16
        assert lengths.tolist() == [len(e) for e in expected]
        assert pointers.tolist() == (np.concatenate(([0], np.cumsum(lengths)[:-1])) * 2).tolist()
        assert doc_index.tolist() == list(range(len(records) + 1))
        assert ids.tolist() == [i for e in expected for i in e]
        packed = manifest_of(jsonl)["output"]["packed"]
        assert (packed["documents"], packed["tokens"], packed["dtype"], packed["eod"], packed["eod_id"]) == (
            len(records), len(ids), "uint16", EOD, 0,
        )
        assert packed["bin"] == prefix.name + ".bin" and packed["seq_len"] == 16 and packed["windows"] == (len(ids) - 1) // 16
        assert packed["tokens"] == manifest_of(jsonl)["output"]["tokens"] + len(records)  # the scan's counts + one EOD each
        report = verify(jsonl)
        assert report.ok and any("packed split" in c for c in report.checks), report.problems
    card = (tmp_path / "out" / "README.md").read_text()  # the dataset card says how to read the packed split
    assert "`pretrain_t_train.tokens.bin`" in card and 'PackedDataset("pretrain_t_train.tokens", seq_len=16)' in card


def test_packed_bytes_are_the_same_for_any_worker_count_and_bucket_size(tmp_path: Path, tokenizer: Path) -> None:
    write_jsonl(tmp_path / "big.jsonl", [{"text": f"{i} the story of a cat and a dog " * 40} for i in range(2500)])
    config = mixture(tmp_path, [{"name": "big", "mix_ratio": 1.0, "source": "big.jsonl"}], tokenizer=str(tokenizer),
                     pack=True, shuffle_bucket_mb=1)
    one = build(config, tmp_path / "w1").files["train"]
    two = build(config, tmp_path / "w2", workers=2).files["train"]
    checksum = manifest_of(one)["output"]["packed"]["checksum"]
    assert len(checksum["chunks"]) > 1  # several write tasks each filled a range
    for suffix in (".tokens.bin", ".tokens.idx"):
        name = one.name.removesuffix(".jsonl") + suffix
        assert (one.parent / name).read_bytes() == (two.parent / name).read_bytes()
    assert manifest_of(two)["output"]["packed"] == manifest_of(one)["output"]["packed"]


def test_megatron_core_reads_the_packed_split(tmp_path: Path, tokenizer: Path) -> None:
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")  # installed by `.[dev]`
    result = build(packed_mixture(tmp_path, tokenizer), tmp_path / "out")
    jsonl = result.files["train"]
    dataset = indexed.IndexedDataset(str(jsonl.with_name(jsonl.name.removesuffix(".jsonl") + ".tokens")))
    records = read_jsonl(jsonl)
    assert len(dataset) == len(records)
    for i in (0, 1, len(records) // 2, len(records) - 1):
        assert dataset[i].tolist() == encode(tokenizer, records[i]["text"]) + [0]


def test_pack_problems_are_named(tmp_path: Path, tokenizer: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stories(tmp_path)
    one = [{"name": "stories", "mix_ratio": 1.0, "source": "stories.jsonl"}]
    no_tokenizer = load_mixture(mixture(tmp_path, one, pack={"seq_len": 8}))
    assert any("metadata.pack: writes token ids, which needs metadata.tokenizer" in p for p in no_tokenizer.problems)
    sft = load_mixture(mixture(tmp_path, one, phase="sft", tokenizer=str(tokenizer), pack=True))
    assert any("SFT, DPO and RL records stay unpacked" in p for p in sft.problems)
    bad = load_mixture(mixture(tmp_path, one, tokenizer=str(tokenizer), pack={"seq_len": 0, "eod": 5, "size": 1}))
    assert {p.split(": ")[1] for p in bad.problems} >= {"metadata.pack.seq_len", "metadata.pack.eod", "metadata.pack.size"}
    with pytest.raises(ConfigError, match=r"metadata.pack.eod '</s>' is not a token of the tokenizer"):
        build(mixture(tmp_path, one, tokenizer=str(tokenizer), pack={"eod": "</s>"}), tmp_path / "out")
    assert main(["build", str(mixture(tmp_path, one)), "--output-dir", str(tmp_path / "cli"), "--pack"]) != 0
    assert "--pack (metadata.pack): writes token ids, which needs metadata.tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists() or not any((tmp_path / "cli").iterdir())


def test_build_pack_flag_and_removing_pack_removes_the_packed_files(tmp_path: Path, tokenizer: Path) -> None:
    config = packed_mixture(tmp_path, tokenizer, pack=None)
    out = tmp_path / "out"
    assert main(["build", str(config), "--output-dir", str(out), "--no-report", "--pack", "32"]) == 0
    packed = manifest_of(out / "pretrain_t_train.jsonl")["output"]["packed"]
    assert packed["seq_len"] == 32 and (out / packed["bin"]).is_file()
    # Same YAML without --pack: a rebuild (the key covers pack) that leaves no stale packed files.
    assert main(["build", str(config), "--output-dir", str(out), "--no-report"]) == 0
    assert "packed" not in manifest_of(out / "pretrain_t_train.jsonl")["output"]
    assert not list(out.glob("*.tokens.*"))


def test_a_removed_packed_file_forces_a_rebuild(tmp_path: Path, tokenizer: Path) -> None:
    config = packed_mixture(tmp_path, tokenizer)
    first = build(config, tmp_path / "out")
    assert build(config, tmp_path / "out").reused
    (tmp_path / "out" / "pretrain_t_train.tokens.bin").unlink()
    again = build(config, tmp_path / "out")
    assert not again.reused and (tmp_path / "out" / "pretrain_t_train.tokens.bin").is_file()
    assert again.manifests["train"]["output"]["packed"] == first.manifests["train"]["output"]["packed"]


# -- max_tokens ---------------------------------------------------------------------------------

def test_max_tokens_caps_a_source_at_the_seeded_records_that_fit(tmp_path: Path, tokenizer: Path) -> None:
    stories(tmp_path)
    datasets = [{"name": "stories", "mix_ratio": 1.0, "source": "stories.jsonl", "max_tokens": 1000}]
    result = build(mixture(tmp_path, datasets, tokenizer=str(tokenizer)), tmp_path / "out")
    source = manifest_of(result.files["train"])["sources"]["stories"]
    taken = read_jsonl(result.files["train"])
    assert source["max_tokens"] == 1000 and source["cap"] == source["available"] == len(taken)
    held = sum(len(encode(tokenizer, r["text"])) for r in taken)
    assert held == source["tokens"] <= 1000
    # The cap is the max_samples order: the same records as max_samples = cap, and one more would not fit.
    capped = [{"name": "stories", "mix_ratio": 1.0, "source": "stories.jsonl", "max_samples": source["cap"]}]
    same = build(mixture(tmp_path, capped, file_name="cap.yaml", tokenizer=str(tokenizer)), tmp_path / "cap")
    assert sorted(r["text"] for r in read_jsonl(same.files["train"])) == sorted(r["text"] for r in taken)
    one_more = [{"name": "stories", "mix_ratio": 1.0, "source": "stories.jsonl", "max_samples": source["cap"] + 1}]
    more = build(mixture(tmp_path, one_more, file_name="more.yaml", tokenizer=str(tokenizer)), tmp_path / "more")
    assert manifest_of(more.files["train"])["sources"]["stories"]["tokens"] > 1000


def test_max_tokens_needs_a_tokenizer(tmp_path: Path) -> None:
    stories(tmp_path)
    config = load_mixture(mixture(tmp_path, [{"name": "stories", "mix_ratio": 1.0, "source": "stories.jsonl", "max_tokens": 10}]))
    assert any("datasets[0].max_tokens: caps the source's tokens, which needs metadata.tokenizer" in p for p in config.problems)


# -- PackedDataset --------------------------------------------------------------------------------

@pytest.fixture()
def packed_split(tmp_path: Path, tokenizer: Path) -> Path:
    result = build(packed_mixture(tmp_path, tokenizer), tmp_path / "out")
    jsonl = result.files["train"]
    return jsonl.with_name(jsonl.name.removesuffix(".jsonl") + ".tokens")


def test_windows_tile_the_token_stream(packed_split: Path) -> None:
    from mixprep import PackedDataset

    stream = read_megatron(packed_split)[-1].astype(np.int64)
    dataset = PackedDataset(packed_split)  # seq_len from the manifest: 16
    assert dataset.seq_len == 16 and len(dataset) == (len(stream) - 1) // 16
    for i in (0, 1, len(dataset) - 1, -1):
        x, y, mask = dataset[i]
        start = (i % len(dataset)) * 16
        assert x.tolist() == stream[start : start + 16].tolist() and y.tolist() == stream[start + 1 : start + 17].tolist()
        assert mask.tolist() == [1] * 16 and x.dtype == y.dtype == mask.dtype == __import__("torch").int64
    with pytest.raises(IndexError, match="out of range"):
        dataset[len(dataset)]
    masked = PackedDataset(str(packed_split) + ".bin", 16, mask_document_boundaries=True)
    x, _, mask = masked[3]
    assert (mask == (x != 0).long()).all() and int((x == 0).sum()) > 0  # EOD positions in this window carry no loss
    assert len(PackedDataset(packed_split, 7)) == (len(stream) - 1) // 7


def test_packed_dataset_in_dataloader_workers_and_after_truncation(packed_split: Path) -> None:
    from torch.utils.data import DataLoader

    from mixprep import PackedDataset

    dataset = PackedDataset(packed_split, 8)
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy[5][0].tolist() == dataset[5][0].tolist()
    serial = [b[0] for b in DataLoader(dataset, batch_size=4)]
    parallel = [b[0] for b in DataLoader(dataset, batch_size=4, num_workers=2)]
    assert all((a == b).all() for a, b in zip(serial, parallel, strict=True))
    bin_path = packed_split.with_name(packed_split.name + ".bin")
    with open(bin_path, "r+b") as handle:
        handle.truncate(bin_path.stat().st_size // 2)
    with pytest.raises(SourceError, match="truncated"):
        dataset[len(dataset) - 1]
    with pytest.raises(Exception, match="bytes, but .* describes"):
        PackedDataset(packed_split, 8)


def test_packed_dataset_needs_a_seq_len_without_a_manifest(tmp_path: Path) -> None:
    from mixprep import PackedDataset
    from mixprep.serve.indexed import write_indexed_index

    ids = np.arange(100, dtype=np.uint16)
    ids.tofile(tmp_path / "foreign.bin")
    write_indexed_index(tmp_path / "foreign.idx", np.array([60, 40]), np.dtype(np.uint16))
    with pytest.raises(ConfigError, match="give seq_len"):
        PackedDataset(tmp_path / "foreign")
    foreign = PackedDataset(tmp_path / "foreign", 10)
    x, y, _ = foreign[8]
    assert len(foreign) == 9 and x.tolist() == list(range(80, 90)) and y.tolist() == list(range(81, 91))


# -- training on it -------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_packed_supervises_every_position(tmp_path: Path, tokenizer: Path) -> None:
    from mixprep.train.__main__ import main as train_main

    config = packed_mixture(tmp_path, tokenizer, pack=None)
    common = ["--data_config", str(config), "--output_dir", str(tmp_path / "data"), "--tokenizer", str(tokenizer),
              "--max_seq_len", "32", "--hidden_size", "32", "--num_hidden_layers", "1", "--num_heads", "2",
              "--batch_size", "4", "--max_steps", "6", "--log_interval", "3", "--save_interval", "6",
              "--eval_batches", "2", "--num_workers", "0"]
    assert train_main([*common, "--packed", "--out_dir", str(tmp_path / "packed")]) == 0
    records = [json.loads(line) for line in (tmp_path / "packed" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["supervised_tokens_per_s"] == r["tokens_per_s"] for r in records)
    assert records[-1]["tokens_seen"] == 6 * 4 * 32 and records[-1]["val_loss"] is not None
    assert (tmp_path / "data" / "pretrain_t_train.tokens.bin").is_file()
    assert train_main([*common, "--out_dir", str(tmp_path / "plain")]) == 0
    plain = [json.loads(line) for line in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["supervised_tokens_per_s"] < r["tokens_per_s"] for r in plain)  # padding carries no loss


def test_train_packed_without_a_packed_split_says_how_to_make_one(tmp_path: Path, tokenizer: Path) -> None:
    from mixprep.train.__main__ import main as train_main

    stories(tmp_path)
    jsonl = build(mixture(tmp_path, [{"name": "stories", "mix_ratio": 1.0, "source": "stories.jsonl"}]), tmp_path / "out").files["train"]
    with pytest.raises(SourceError, match=r"--packed: .*tokens.bin does not exist; build the mixture with packing"):
        train_main(["--prepared_data", str(jsonl), "--packed", "--tokenizer", str(tokenizer), "--out_dir", str(tmp_path / "run")])
    with pytest.raises(ConfigError, match="SFT records stay unpacked"):
        train_main(["--prepared_data", str(jsonl), "--packed", "--phase", "sft", "--out_dir", str(tmp_path / "run")])


def test_a_filter_tokenizer_inside_the_project_is_recorded_relative(tmp_path: Path, tokenizer: Path) -> None:
    import shutil

    stories(tmp_path)
    shutil.copytree(tokenizer, tmp_path / "tok")
    datasets = [{"name": "stories", "mix_ratio": 1.0, "source": "stories.jsonl", "filters": {"max_tokens": 40, "tokenizer": "tok"}}]
    manifest = manifest_of(build(mixture(tmp_path, datasets), tmp_path / "out").files["train"])
    assert manifest["sources"]["stories"]["filters"]["max_tokens"] == {"limit": 40, "tokenizer": "tok"}  # moves with the project
    assert manifest["sources"]["stories"]["removed"]["max_tokens"] > 0
