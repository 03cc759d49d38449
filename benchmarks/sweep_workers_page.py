"""Renderer of docs/distributed.md's sweep-workers section from ``docs/data/sweep-workers.json``, which
``python -m benchmarks.sweep_workers`` writes: one sweep's wall time with 1, 2 and 4 workers on one PostgreSQL
study, as a ratio to one worker."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp, table


def _seconds(s: dict[str, Any]) -> str:
    return f"{s['median']:.1f} ({s['min']:.1f} … {s['max']:.1f})"


def _table(d: dict[str, Any], epochs: str) -> list[str]:
    """One trial length's table: per worker count the wall seconds, the ratio to one worker, the trials each worker
    ran, a trial's seconds, the busiest worker's seconds outside trials, the target and its verdict."""
    runs = [r for r in d["runs"] if str(r["epochs"]) == epochs]
    rows = []
    for n, row in d["by_epochs"][epochs].items():
        split = " / ".join("+".join(map(str, r["trials_per_worker"]))
                           for r in sorted(runs, key=lambda r: r["round"]) if str(r["workers"]) == n)
        goal = f"<= {row['goal']}x" if row["goal"] is not None else "-"
        rows.append([n, _seconds(row["wall_seconds"]), f"{row['ratio']:.2f}x",
                     f"{min(row['ratio_rounds']):.2f} … {max(row['ratio_rounds']):.2f}", split,
                     f"{row['trial_seconds']:.1f}", f"{row['outside_trials_seconds']:.1f}", goal, row["verdict"]])
    return [f"**{epochs} epochs per trial.**" + _slower(d["by_epochs"][epochs]), "",
            *table(["workers", "wall s to the complete outputs, median (min … max)", "ratio to 1 worker (of medians)",
                    "per round (min … max)", "trials each worker ran, per round", "s per trial (median)",
                    "s outside trials, busiest worker (median)", "target", "verdict"], rows), ""]


def timing(d: dict[str, Any]) -> str:
    """The setting, a table per trial length (:func:`_table`) and what every measurement was checked for."""
    n_values = len(d["values"])
    lengths = " and ".join(map(str, d["epochs"]))
    return "\n".join([
        f"Measured by `python -m benchmarks.sweep_workers` ({stamp(d['provenance'])}). Server: {d['server']}, "
        f"started by the script on this machine. Sweep: `{d['recipe']}` generation 0, {lengths} epochs per "
        f"trial, `--key {d['key']}` over {n_values} values, `--order given --metric test`; every worker its own "
        f"`--out`, all started at once. {d['rounds']} interleaved rounds; the 1-minute load average during the "
        f"runs was {d['load_1min']['min']} to {d['load_1min']['max']} (the machine is shared).",
        "",
        *(line for e in map(str, d["epochs"]) for line in _table(d, e)),
        f"In every measurement each of the {n_values} values was COMPLETE exactly once in the storage, none was left "
        "running or waiting, and every worker wrote the same `sweep.csv`. A trial is a whole `distill run`; each "
        "worker process also pays its start-up (imports, recipe checks, opening the study) before its first trial "
        "and writes the outputs after its last: the seconds outside trials, which do not shrink with more workers.",
        "",
        _reading(d),
    ])


def _slower(by_workers: dict[str, Any]) -> str:
    """A sentence when a trial took longer with every added worker (decided from the JSON), else nothing."""
    seconds = [row["trial_seconds"] for _, row in sorted(by_workers.items(), key=lambda kv: int(kv[0]))]
    if all(a < b for a, b in zip(seconds[:-1], seconds[1:], strict=True)):
        return " A trial took longer with every added worker: the workers shared the cores."
    return ""


def _reading(d: dict[str, Any]) -> str:
    """What this machine can show: workers beyond its cores share them, and a load above the cores means other jobs
    took part of them too (decided from the JSON)."""
    cores, counts = d["provenance"]["cores"], [int(n) for n in next(iter(d["by_epochs"].values()))]
    over = [n for n in counts if n > cores]
    text = (f"This machine has {cores} cores, so at most {cores} workers run at once; "
            + (f"{' and '.join(map(str, over))} workers share them, and their target is for a machine with a core "
               f"per worker: not measurable here. " if over else "every worker count had a core of its own. "))
    if d["load_1min"]["max"] > cores:
        text += (f"The 1-minute load average reached {d['load_1min']['max']} on {cores} cores; it counts the "
                 f"workers themselves (up to {max(counts)} processes), so above {cores} the cores were shared, by "
                 "the larger worker counts or by other jobs on the machine.")
    return text
