"""One exception tree for everything mixprep reports to a user.

Every message says what was wrong, the value received, what is accepted and,
where it helps, a hint; it names the file and the line/record or key path.
The CLI prints `MixprepError`s without a traceback and exits non-zero.
"""
from __future__ import annotations


class MixprepError(Exception):
    """Base of every error mixprep raises on purpose."""


class ConfigError(MixprepError):
    """A mixture file (or CLI option) that cannot be built as written."""


class SourceError(MixprepError):
    """A source that cannot be read: missing file, empty glob, unreadable format."""


class RecordError(MixprepError):
    """A record that does not fit: invalid JSON, missing or mistyped field."""


class SamplingError(MixprepError):
    """Quotas that cannot be met: empty source, repeats forbidden, too small a split."""


class OutputError(MixprepError):
    """An output that cannot be written or that fails verification."""


class IndexFormatError(MixprepError):
    """An offset index that is corrupt, from another format version, or stale."""


class TaskError(MixprepError):
    """A build task that kept failing on an executor (after its retries)."""
