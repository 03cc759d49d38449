"""The model card (``README.md``) of an export, written from the run's own records.

Every number in it is read from the run directory -- test accuracy, NLL and ECE, training accuracy, parameters,
epochs and seeds from ``summary.json``; the loss, temperature and alpha from the resolved recipe
(``config.yaml``); the dataset's fingerprint from the cache manifest; checksums from ``state.json`` -- or measured by
the export itself (the check against PyTorch). Nothing is typed in.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

from distill import __version__
from distill.export.formats import Check, ExportFormat
from distill.export.source import RunNetwork
from distill.plan import RunLayout

__all__ = ["model_card", "toolkit_commit"]


def toolkit_commit() -> str | None:
    """The git commit of the distill source that runs now (None outside a git checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _fingerprint(run: RunNetwork) -> dict[str, Any]:
    """The dataset fingerprint the run recorded in its last member's cache manifest (else computed now)."""
    manifest = RunLayout(run.root).cache_dir(run.selection.members[-1]) / "manifest.json"
    if manifest.is_file():
        recorded = json.loads(manifest.read_text()).get("dataset")
        if recorded:
            return recorded
    return run.datamodule.fingerprint()


def _parameters(run: RunNetwork) -> str:
    """Trainable / total parameters of the exported network (an ensemble's: its members' summed)."""
    entries = {g["generation"]: g for g in run.summary["generations"]}
    counts = [entries.get(k, {}).get("parameters") for k in run.selection.members]
    if not all(counts):
        return "—"
    return f"{sum(c['trainable'] for c in counts):,} / {sum(c['total'] for c in counts):,}"


def _metrics_table(run: RunNetwork) -> list[str]:
    test, train = run.metrics["test"], run.metrics.get("train", {})
    return ["| network | test acc % | test NLL | test ECE | train acc % | parameters (trainable / total) |",
            "|---|---:|---:|---:|---:|---:|",
            f"| {run.selection.label} | {_pct(test.get('acc'))} | {_num(test.get('nll'))} | {_num(test.get('ece'))} | "
            f"{_pct(train.get('acc'))} | {_parameters(run)} |"]


def _lineage(run: RunNetwork) -> list[str]:
    """Every generation up to the exported one: whom it learned from, with which loss, and how it scored."""
    entries = {g["generation"]: g for g in run.summary["generations"]}
    rows = ["| generation | backbone | learned from | loss | temperature | alpha | epochs | seed | test acc % |",
            "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for k in range(run.selection.members[-1] + 1):
        spec, g = run.specs[k], entries.get(k, {})
        source = g.get("source", "trained")
        learned = spec.teacher_label or (source if source != "trained" else "labels")
        loss = spec.kd.variant if spec.members else "cross-entropy"
        rows.append(f"| gen-{k} | {g.get('backbone', spec.label)} | {learned} | {loss} | "
                    f"{spec.kd.temperature if spec.members else '—'} | {spec.kd.alpha if spec.members else '—'} | "
                    f"{g.get('epochs', '—')} | {spec.seed} | {_pct(g.get('test', {}).get('acc'))} |")
    return rows


def model_card(run: RunNetwork, exporter: type[ExportFormat], check: Check, recorded_same: int, folder: str) -> str:
    """``README.md`` of an export of ``run`` in ``exporter``'s format.

    Args:
        run: the opened run.
        exporter: the format written.
        check: the export's measured difference from PyTorch.
        recorded_same: of the checked test images, how many the rebuilt network assigns the class the run recorded.
        folder: the export folder's name, for the loading snippet.
    """
    pre, fp = run.preprocess, _fingerprint(run)
    members = run.selection.members
    what = (f"the probability average of generations {members[0]}..{members[-1]}, as one module"
            if run.selection.ensemble else f"generation {members[0]} ({run.members[0].label})")
    commit = toolkit_commit()
    grey = "grey" if pre.channels == 1 else "RGB"
    lines = [
        f"# {run.summary['recipe']} · {run.selection.label}",
        "",
        f"A network distilled with distill (knowledge distillation, Born-Again Networks): "
        f"{what}, from the run `{run.root.name}`; exported as {exporter.description}.",
        "",
        f"- **classes** ({len(run.class_names)}): {', '.join(run.class_names)}",
        f"- **input**: {grey} images of {pre.size[0]}x{pre.size[1]} pixels (others are resized, bilinear), scaled "
        f"to [0, 1] and normalised with mean {list(pre.mean)} and std {list(pre.std)}",
        f"- **output**: {'log of the average probability' if run.selection.ensemble else 'logits'} "
        f"(batch, {len(run.class_names)}); softmax gives the probabilities",
        f"- **task**: {run.members[-1].task}",
        "",
        "## Test metrics (the run's own, from summary.json)",
        "",
        *_metrics_table(run),
        "",
        "## Dataset",
        "",
        f"`{fp.get('name')}`: {fp.get('length')} training samples, {fp.get('num_classes')} classes; labels sha256 "
        f"`{fp.get('labels_sha256')}`; transform: {fp.get('transform')}"
        + (f"; split: {fp['split']}" if fp.get("split") else ""),
        "",
        "## Lineage",
        "",
        *_lineage(run),
        "",
        "## Export check",
        "",
        check.describe(exporter.name) + ".",
        f"The rebuilt PyTorch network predicts the class the run recorded (`test_logits.npy`) on {recorded_same} of "
        f"these {check.samples} images.",
        "",
        "## Loading",
        "",
        "```python",
        exporter.usage(folder),
        "```",
        "",
        "`distill predict FOLDER IMAGES...` applies the preprocessing above (from `config.json`).",
        "",
        "## Provenance",
        "",
        f"- run directory: `{run.root}`; checkpoints (sha256): "
        + ", ".join(f"gen-{k} `{run.checkpoints[k][:16]}…`" for k in members),
        f"- exported {datetime.date.today().isoformat()} by distill {__version__}"
        + (f" (commit `{commit}`)" if commit else " (not a git checkout)")
        + "; the run directory does not record which distill version trained it",
        "",
        "## Recipe (the run's config.yaml)",
        "",
        "```yaml",
        run.recipe.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
