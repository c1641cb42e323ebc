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
    "UnifiedDataset": "mixprep.dataset",
    "PretrainDataset": "mixprep.dataset",
    "SFTDataset": "mixprep.dataset",
    "DPODataset": "mixprep.dataset",
    "RLAIFDataset": "mixprep.dataset",
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
