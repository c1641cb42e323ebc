"""mixprep: exact, deterministic, streaming training-data mixtures for language models.

`DatasetMixer` builds a mixture from a YAML file; `UnifiedDataset` serves the
result (or any JSONL) to PyTorch. Names are imported lazily so that
`import mixprep` stays light: torch is only loaded when a dataset class is used.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DatasetMixer": "mixprep.mixer",
    "UnifiedDataset": "mixprep.serve.dataset",
    "PackedDataset": "mixprep.serve.packed",
    "PretrainDataset": "mixprep.serve.dataset",
    "SFTDataset": "mixprep.serve.dataset",
    "DPODataset": "mixprep.serve.dataset",
    "RLAIFDataset": "mixprep.serve.dataset",
    "MixprepError": "mixprep.errors",
    "ConfigError": "mixprep.errors",
    "SourceError": "mixprep.errors",
    "RecordError": "mixprep.errors",
    "SamplingError": "mixprep.errors",
    "OutputError": "mixprep.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'mixprep' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
