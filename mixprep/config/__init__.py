"""Mixture YAML -> frozen, typed config: `load` reads the file safely, `parse` builds the
`schema` types from it (each `source:` entry through `source_specs`; `checks` holds the
problem list and the typed reads of single values they share).

Parsing never stops at the first problem: it collects every one, each naming the
YAML file and the key path (`toy.yaml: datasets[1].mix_ratio: ...`), with a
"did you mean" hint for a mistyped key. `load_mixture` raises only when the file
cannot be read as a YAML mapping at all; everything else is returned in
`MixtureConfig.problems`, so `validate_mixture()` can report a bad mixture
without raising and `build` can refuse it with the whole list.
"""
from __future__ import annotations

from mixprep.config.load import load_mixture
from mixprep.config.parse import parse_mixture
from mixprep.config.schema import (
    DatasetSpec,
    DecontaminationSpec,
    DedupSpec,
    EvalSet,
    HubSource,
    MixtureConfig,
    Phase,
    RemoteTimeouts,
    RepeatPolicy,
    SourceSpec,
    ValidationSpec,
    record_schema_for,
)

__all__ = [
    "DatasetSpec",
    "DecontaminationSpec",
    "DedupSpec",
    "EvalSet",
    "HubSource",
    "MixtureConfig",
    "Phase",
    "RemoteTimeouts",
    "RepeatPolicy",
    "SourceSpec",
    "ValidationSpec",
    "load_mixture",
    "parse_mixture",
    "record_schema_for",
]
