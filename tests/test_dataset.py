"""UnifiedDataset: access protocol, laziness across workers, Parquet, errors, aliases."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from dataset_helpers import as_triple, minimind_pretrain, minimind_sft, synthetic_text
from helpers import write_jsonl
from torch.utils.data import DataLoader

import mixprep.serve.index as index_mod
from mixprep.errors import ConfigError, RecordError, SourceError
from mixprep.serve.dataset import DPODataset, PretrainDataset, RLAIFDataset, SFTDataset, UnifiedDataset


@pytest.fixture
def pretrain_file(tmp_path):
    rng = np.random.default_rng(1)
    records = [{"text": synthetic_text(rng, int(rng.integers(5, 400))), "source": "s"} for _ in range(40)]
    return write_jsonl(tmp_path / "pretrain.jsonl", records), records


@pytest.fixture
def sft_file(tmp_path):
    rng = np.random.default_rng(2)
    records = [
        {"conversations": [
            {"role": "user", "content": synthetic_text(rng, 10, odd=0.0)},
            {"role": "assistant", "content": synthetic_text(rng, 30, odd=0.0)},
        ]}
        for _ in range(24)
    ]
    return write_jsonl(tmp_path / "sft.jsonl", records), records


def test_items_match_minimind_and_support_python_indexing(pretrain_file, chatml):
    path, records = pretrain_file
    ds = UnifiedDataset(path, chatml, max_length=64)
    assert len(ds) == 40 and isinstance(ds, torch.utils.data.Dataset)
    for i in (0, 17, 39):
        x, y, mask = ds[i]
        assert x.dtype == torch.int64 and x.shape == (63,)
        expected = as_triple(*minimind_pretrain(chatml, records[i]["text"], 64))
        assert [x.tolist(), y.tolist(), mask.tolist()] == expected
    assert torch.equal(ds[-1][0], ds[39][0]) and torch.equal(ds[-40][1], ds[0][1])
    assert torch.equal(ds[np.int64(3)][0], ds[3][0])
    with pytest.raises(IndexError, match=r"index 40 out of range for 40 records"):
        ds[40]
    with pytest.raises(IndexError, match=r"index -41 out of range"):
        ds[-41]


def test_tokenizer_path_string_and_return_labels(sft_file, chatml, chatml_dir):
    path, records = sft_file
    ds = SFTDataset(str(path), str(chatml_dir), max_length=96, return_labels=True)
    ids, labels = ds[5]
    assert [ids.tolist(), labels.tolist()] == list(minimind_sft(chatml, records[5]["conversations"], 96))


def test_pickles_without_data_and_dataloader_workers_agree(pretrain_file, chatml):
    path, _ = pretrain_file
    ds = UnifiedDataset(path, chatml, max_length=48)
    ds[0]  # open the mmap in this process first: it must not travel
    state = pickle.dumps(ds)
    assert b"the of and" not in state  # no record text in the pickle
    clone = pickle.loads(state)
    assert torch.equal(clone[7][0], ds[7][0])

    def batches(workers: int) -> list[list[torch.Tensor]]:
        loader = DataLoader(ds, batch_size=8, shuffle=False, num_workers=workers)
        return [list(batch) for batch in loader]

    single, parallel = batches(0), batches(2)
    assert len(single) == len(parallel) == 5
    for a, b in zip(single, parallel, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_dataloader_workers_agree_on_seeded_randomness(sft_file, chatml):
    path, _ = sft_file
    ds = SFTDataset(path, chatml, max_length=80, random_system_prompt=True, seed=3)
    single = [b[0] for b in DataLoader(ds, batch_size=6, num_workers=0)]
    parallel = [b[0] for b in DataLoader(ds, batch_size=6, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(single, parallel, strict=True))


def test_parquet_input_reads_one_row_group_at_a_time(tmp_path, pretrain_file, chatml):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, records = pretrain_file
    parquet = tmp_path / "pretrain.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet, row_group_size=7)
    from_jsonl = UnifiedDataset(path, chatml, max_length=64)
    from_parquet = UnifiedDataset(parquet, chatml, max_length=64)
    assert len(from_parquet) == 40
    for i in (0, 6, 7, 20, 39, 3):
        assert all(torch.equal(a, b) for a, b in zip(from_jsonl[i], from_parquet[i], strict=True))
    assert from_parquet._reader()._group == 0  # row 3 reopened group 0 only


def test_dpo_and_rlaif_aliases(tmp_path, chatml):
    dpo = write_jsonl(tmp_path / "dpo.jsonl", [{"prompt": "q", "chosen": "good", "rejected": "bad"}])
    rl = write_jsonl(tmp_path / "rl.jsonl", [{"prompt": "capital of France?", "answer": "Paris"}])
    pair = DPODataset(dpo, chatml, max_length=32)[0]
    assert set(pair) == {"x_chosen", "y_chosen", "mask_chosen", "x_rejected", "y_rejected", "mask_rejected"}
    assert pair["x_chosen"].shape == (31,) and pair["mask_chosen"].sum() > 0
    item = RLAIFDataset(rl, chatml, max_length=32)[0]
    assert item["input_ids"].shape == (32,) and item["answer"] == "Paris"
    assert UnifiedDataset(rl, chatml, 32, "ppo")[0]["prompt"] == item["prompt"]
    assert PretrainDataset(rl, chatml, text_field="prompt").phase == "pretrain"
    with pytest.raises(ConfigError, match=r"SFTDataset always uses phase 'sft'"):
        SFTDataset(rl, chatml, phase="dpo")


def test_stale_index_is_rebuilt_when_the_file_changes(tmp_path, chatml):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "one"}, {"text": "two"}])
    assert len(UnifiedDataset(path, chatml, 16)) == 2
    write_jsonl(path, [{"text": "one"}, {"text": "two"}, {"text": "three"}])
    ds = UnifiedDataset(path, chatml, 16)
    assert len(ds) == 3
    assert ds[2][0].tolist()[:2] == [1, chatml("three", add_special_tokens=False).input_ids[0]]


def test_read_only_folder_uses_the_cache_dir(tmp_path, monkeypatch, chatml):
    data_dir = tmp_path / "ro"
    data_dir.mkdir()
    path = write_jsonl(data_dir / "d.jsonl", [{"text": "one"}])
    monkeypatch.setenv("MIXPREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(index_mod, "_folder_is_writable", lambda folder: False)
    assert len(UnifiedDataset(path, chatml, 16)) == 1
    assert not (data_dir / "d.idx").exists()
    assert list((tmp_path / "cache" / "index").glob("d-*.idx"))


def test_bad_records_name_file_line_and_what_is_missing(tmp_path, chatml):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n{"txt": "typo"}\n{"text": \n[1]\n')
    ds = UnifiedDataset(path, chatml, 16)
    assert len(ds) == 4
    with pytest.raises(RecordError, match=r"bad\.jsonl:3 \(record 1\): missing field 'text' \(record has: txt\) \(phase 'pretrain'\)"):
        ds[1]
    with pytest.raises(RecordError, match=r"bad\.jsonl:4 \(record 2\): invalid JSON"):
        ds[2]
    with pytest.raises(RecordError, match=r"bad\.jsonl:5 \(record 3\): expected a JSON object, got list"):
        ds[3]
    sft = UnifiedDataset(path, chatml, 16, "sft")
    with pytest.raises(RecordError, match=r"bad\.jsonl:1 \(record 0\): missing field 'conversations'"):
        sft[0]


def test_construction_errors(tmp_path, chatml, chatml_dir):
    from transformers import AutoTokenizer

    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "one"}])
    with pytest.raises(ConfigError, match=r"unknown phase 'pretraining'; valid phases: pretrain, sft, dpo, ppo, rlaif"):
        UnifiedDataset(path, chatml, phase="pretraining")
    with pytest.raises(SourceError, match=r"missing\.jsonl: no such file; hint: run `mixprep build CONFIG`"):
        UnifiedDataset(tmp_path / "missing.jsonl", chatml)
    with pytest.raises(ConfigError, match=r"cannot load tokenizer '.*nowhere'"):
        UnifiedDataset(path, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"tokenizer must be a Hugging Face tokenizer or a path to one, got int"):
        UnifiedDataset(path, 42)
    no_template = AutoTokenizer.from_pretrained(str(chatml_dir))
    no_template.chat_template = None
    with pytest.raises(ConfigError, match=r"has no chat template.*fix: set tokenizer\.chat_template"):
        UnifiedDataset(path, no_template, phase="sft")
    assert len(UnifiedDataset(path, no_template, phase="pretrain")) == 1


def test_empty_file_has_no_records(tmp_path, chatml):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    ds = UnifiedDataset(path, chatml)
    assert len(ds) == 0
    with pytest.raises(IndexError):
        ds[0]


def test_a_file_changed_under_an_open_dataset_is_an_error_not_mixed_records(tmp_path, chatml):
    import pickle

    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"record {i}"} for i in range(20)])
    appended = UnifiedDataset(path, chatml, 16)
    appended[0]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"text": "appended"}\n')
    with pytest.raises(SourceError, match=r"d\.jsonl changed while this dataset was reading it \(size 430 -> 451 bytes"):
        appended[1]

    write_jsonl(path, [{"text": f"record {i}"} for i in range(20)])
    truncated = UnifiedDataset(path, chatml, 16)
    with open(path, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(SourceError, match=r"changed while this dataset was reading it .*mix two versions"):
        truncated[19]

    write_jsonl(path, [{"text": f"record {i}"} for i in range(20)])
    reading = UnifiedDataset(path, chatml, 16)
    before = reading[5]
    worker_copy = pickle.dumps(reading)  # what a DataLoader worker receives
    rebuilt = tmp_path / "new.jsonl"
    write_jsonl(rebuilt, [{"text": f"other {i}"} for i in range(7)])
    os.replace(rebuilt, path)  # a rebuild renames a new file over the old one
    assert all(torch.equal(a, b) for a, b in zip(reading[5], before, strict=True))  # still the old file, whole
    with pytest.raises(SourceError, match=r"d\.jsonl changed since the dataset was created \(size 430 -> \d+ bytes"):
        pickle.loads(worker_copy)[0]
