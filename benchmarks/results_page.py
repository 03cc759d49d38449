"""Renderers of docs/results.md and docs/recipes.md's Fashion-MNIST section from ``docs/data/results.json``, which
``python -m benchmarks.results`` writes. The goal's verdicts ("met", "not met") are decided here from the paired
per-seed differences."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.markdown import cells, mean_std, pct, stamp, table


def _runs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["seeds"][s] for s in sorted(entry["seeds"], key=int)]


def _seeds(entry: dict[str, Any]) -> str:
    return ", ".join(sorted(entry["seeds"], key=int))


def _diff_line(label: str, diffs: list[float]) -> str:
    return cells([label, mean_std(diffs), f"{min(diffs) * 100:+.2f} … {max(diffs) * 100:+.2f}",
                  ", ".join(f"{100 * x:+.2f}" for x in diffs)])


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _model_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """Per generation and ensemble: train acc, test acc, NLL, ECE (mean ± std over seeds) and test acc per seed."""
    rows = []
    for k in range(len(runs[0]["summary"]["generations"])):
        g = [r["summary"]["generations"][k] for r in runs]
        rows.append([f"gen-{k}", mean_std([x["train"]["acc"] for x in g]), mean_std([x["test"]["acc"] for x in g]),
                     mean_std([x["test"]["nll"] for x in g], 1, 3), mean_std([x["test"]["ece"] for x in g], 1, 3),
                     ", ".join(pct(x["test"]["acc"]) for x in g)])
    for e in range(len(runs[0]["summary"]["ensembles"])):
        es = [r["summary"]["ensembles"][e] for r in runs]
        m = es[0]["members"]
        rows.append([f"ensemble {m[0]}..{m[-1]}", "", mean_std([x["test"]["acc"] for x in es]),
                     mean_std([x["test"]["nll"] for x in es], 1, 3), "", ", ".join(pct(x["test"]["acc"]) for x in es)])
    return rows


def _timings(entry: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    return (f"Seeds {_seeds(entry)}; per run (whole command) wall / CPU seconds: "
            + ", ".join(f"{r['wall_seconds']:.0f} / {r.get('cpu_seconds', float('nan')):.0f}"
                        + (" (resumed: the rest of a stopped run)" if r.get("resumed") else "") for r in runs)
            + "; load average (1, 5, 15 min) at each start: "
            + "; ".join(", ".join(map(str, r["load_average"])) for r in runs)
            + f"; OpenMP threads per process: {', '.join(sorted({str(r.get('threads', 'default')) for r in runs}))}"
            + f"; measured at commit {', '.join(sorted({r.get('commit', 'unknown') for r in runs}))}"
            + f" on {', '.join(sorted({r.get('date', 'unknown') for r in runs}))}.")


def results_dataset(name: str, entry: dict[str, Any], goal: dict[str, float]) -> list[str]:
    """One dataset's tables: per generation and ensemble, paired differences, the goal's verdict, wall times."""
    runs = _runs(entry)
    gens = len(runs[0]["summary"]["generations"])
    out = [f"### {name}", "", f"`{entry['recipe']}` {' '.join(entry['overrides'])} — {entry['schedule']}.", "",
           *table(["model", "train acc %", "test acc %", "NLL", "ECE", "test acc % per seed"], _model_rows(runs))]
    acc = [[r["summary"]["generations"][k]["test"]["acc"] for r in runs] for k in range(gens)]
    student_diffs = [[a - b for a, b in zip(acc[k], acc[k - 1], strict=True)] for k in range(1, gens)]
    out += ["", "Paired per-seed differences of test accuracy (points):", "",
            *table(["difference", "mean ± std", "min … max", "per seed"], []),
            *(_diff_line(f"gen-{k} − gen-{k - 1}", diffs) for k, diffs in enumerate(student_diffs, start=1))]
    ens = None
    if runs[0]["summary"]["ensembles"]:
        last = [r["summary"]["ensembles"][-1] for r in runs]
        m = last[0]["members"]
        ens = [e["test"]["acc"] - a for e, a in zip(last, acc[0], strict=True)]
        out.append(_diff_line(f"ensemble {m[0]}..{m[-1]} − gen-0", ens))
    if student_diffs and ens is not None:
        worst = min(statistics.mean(d) for d in student_diffs)
        out += ["", f"Goal: every student ≥ its teacher − {goal['student_margin']:.1f} points (mean over seeds; the "
                f"worst student is {100 * worst:+.2f}) — {_verdict(100 * worst >= -goal['student_margin'])}; the "
                f"ensemble ≥ gen-0 + {goal['ensemble_gain']:.1f} points ({100 * statistics.mean(ens):+.2f}) — "
                f"{_verdict(100 * statistics.mean(ens) >= goal['ensemble_gain'])}."]
    cached = sorted(runs[0]["teacher_entropy"], key=int)
    if cached:
        out += ["", "Mean entropy of each teacher's soft labels on the training set (nats at T = 1; ln 10 = 2.30 is "
                "uniform, 0 is one-hot): " + ", ".join(
                    f"gen-{k} {mean_std([r['teacher_entropy'][k] for r in runs], 1, 3)}" for k in cached) + "."]
    return [*out, "", _timings(entry, runs), ""]


def results_variants(v: dict[str, Any]) -> list[str]:
    """The BAN-variant table: one row per teacher loss / teacher choice, students' test accuracy over seeds."""
    rows = [[row["variant"], *(mean_std(row["values"][c]) if row["values"].get(c) else "—" for c in v["columns"]),
             len(row["seeds"])] for row in v["rows"]]
    return [f"### Born-Again variants on {v['dataset']}", "", v["description"], "",
            *table(["variant", *v["columns"], "seeds"], rows), ""]


def results(d: dict[str, Any]) -> str:
    """The whole measured part of docs/results.md: every dataset, then the variants."""
    body = [f"Machine and commit: {stamp(d['provenance'])}. Each run is a full `distill run` (all generations, cache "
            "builds and evaluation) on this machine's CPU; the schedules are in each section.", ""]
    for name, entry in d["datasets"].items():
        body += results_dataset(name, entry, d["goal"])
    if d.get("variants"):
        body += results_variants(d["variants"])
    return "\n".join(body)


def recipes_fashion(d: dict[str, Any]) -> str:
    """The Fashion-MNIST recipe's accuracies (mean ± std over seeds) and wall times, for docs/recipes.md."""
    if "fashion-mnist" not in d["datasets"]:
        return "Not measured yet: `python -m benchmarks.results --only fashion-mnist` measures it."
    entry = d["datasets"]["fashion-mnist"]
    runs = _runs(entry)
    walls = [r["wall_seconds"] for r in runs]
    gens = [[f"gen-{k}", mean_std([r["summary"]["generations"][k]["train"]["acc"] for r in runs]),
             mean_std([r["summary"]["generations"][k]["test"]["acc"] for r in runs])]
            for k in range(len(runs[0]["summary"]["generations"]))]
    ensembles = [f"| ensemble 0..{e['members'][-1]} | | "
                 f"{mean_std([r['summary']['ensembles'][i]['test']['acc'] for r in runs])} |"
                 for i, e in enumerate(runs[0]["summary"]["ensembles"])]
    return "\n".join([
        f"Measured by `python -m benchmarks.results` ({stamp(d['provenance'])}), seeds {_seeds(entry)}: "
        f"{min(walls):.0f}–{max(walls):.0f} s wall for the whole command. The full tables, with NLL, ECE and paired "
        "differences, are in [Results](results.md).", "",
        *table(["model", "train acc %", "test acc % (mean ± std)"], gens), *ensembles])
