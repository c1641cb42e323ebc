"""The driver's decontamination steps: build the evaluation sets' n-gram index before the
scan, count what the scan removed per evaluation set, and the manifest's block for it.
The matching itself is `decontaminate` (in the scan tasks) and `ngrams` (the kernels)."""
from __future__ import annotations

import logging
from typing import Any

from mixprep.build.decontaminate import DecontIndex, EvalFile, EvalSetSummary, build_index
from mixprep.build.manifest import describe_source
from mixprep.build.scan import ScanResult
from mixprep.config.schema import MixtureConfig
from mixprep.sources.plan import ScanTask

log = logging.getLogger(__name__)


def decontamination_index(
    config: MixtureConfig, evals: list[EvalFile], work: str
) -> tuple[DecontIndex | None, dict[str, EvalSetSummary]]:
    if config.decontaminate is None:
        return None, {}
    index, summaries = build_index(config.decontaminate, evals, work)
    base = config.path.resolve().parent
    for eval_set in config.decontaminate.eval_sets:
        summaries[eval_set.name].source = ", ".join(describe_source(eval_set.source, base))
    log.info(
        "decontamination: %s",
        "; ".join(f"{name} {s.records:,} records, {s.ngrams:,} {config.decontaminate.ngram}-grams" for name, s in summaries.items()),
    )
    for name, summary in summaries.items():
        if summary.without_ngrams:
            log.warning(
                "decontamination: %s of %s records of evaluation set %r have fewer than %d words in every field, "
                "so nothing can match them (lower metadata.decontaminate.ngram to check them)",
                f"{summary.without_ngrams:,}", f"{summary.records:,}", name, config.decontaminate.ngram,
            )
    return index, summaries


def count_decontaminated(
    tasks: list[ScanTask],
    results: list[ScanResult],
    summaries: dict[str, EvalSetSummary],
    validation_removed: dict[str, dict[str, int]],
) -> None:
    """Per evaluation set: records removed for matching it, per dataset; and each validation
    source's decontaminated records (the main sources count theirs as `removed`)."""
    for task, result in zip(tasks, results, strict=True):
        for eval_set, count in result.stats.decontaminated_by.items():
            matched = summaries[eval_set].matched
            matched[task.dataset_name] = matched.get(task.dataset_name, 0) + count
            if task.role == "validation":
                removed = validation_removed.setdefault(task.dataset_name, {})
                removed["decontaminated"] = removed.get("decontaminated", 0) + count


def decontamination_entry(config: MixtureConfig, summaries: dict[str, EvalSetSummary]) -> dict[str, Any] | None:
    if config.decontaminate is None:
        return None
    return {"ngram": config.decontaminate.ngram, "eval_sets": {name: s.as_dict() for name, s in summaries.items()}}
