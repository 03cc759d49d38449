"""The renderers of docs/meta-learning.md's generated sections (see ``benchmarks/pages.py``): JSON in, markdown out.

``benchmarks/meta_results.py``, ``benchmarks/meta_ksweep.py`` and ``benchmarks/meta_sinusoid.py`` measure and write
the JSON; every number below is read from it (or derived from its fields, like the meta-iteration count from the
recorded schedule), none is typed in.
"""

from __future__ import annotations

from typing import Any

from pages import section

PAGE = "docs/meta-learning.md"
RESULTS = "docs/data/meta-results.json"
KSWEEP = "docs/data/meta-ksweep.json"
SINUSOID = "docs/data/meta-sinusoid.json"

# meta_results.py's run and baseline names -> row labels
LABELS = {"maml": "MAML (second order)", "fomaml": "first-order MAML", "anil": "ANIL (head only)",
          "maml_meta_sgd": "MAML + Meta-SGD (learned inner lr per tensor)",
          "feature_extraction": "feature extraction + logistic head", "fine_tuning": "fine-tuning",
          "nearest_mean": "nearest class mean", "nearest_neighbour": "1-nearest neighbour"}


def measured(info: dict[str, Any], script: str) -> str:
    """The sentence naming the machine, load, threads, commit and total time of a meta benchmark's runs."""
    m = info["machine"]
    threads = f"{info['threads']} thread" + ("" if info["threads"] == 1 else "s")
    return (f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores shared with other jobs, load average "
            f"{m['load_average_at_start']} at start, {info['load_average_at_end']} at end), torch {m['torch']}, "
            f"{threads}, commit `{m['commit'][:10]}`, by `{script}` (total {info['wall_seconds']:.0f} s).")


def only(values: list[Any], what: str) -> Any:
    """The one value every row shares (the sections say "the same for every row", so they check it)."""
    if len(set(values)) != 1:
        raise ValueError(f"the rows differ in {what}: {sorted(set(values))}")
    return values[0]


def _row(label: str, mean: float, ci: float, secs: float | None, mib: float | None, wall: str) -> str:
    s = f"{secs:.3f}" if secs is not None else "–"
    m = f"{mib:.1f}" if mib is not None else "–"
    return f"| {label} | {100 * mean:.1f} ± {100 * ci:.1f} | {s} | {m} | {wall} |"


@section("meta-results", PAGE, RESULTS, "benchmarks/meta_results.py")
def meta_results(d: dict[str, Any]) -> str:
    """The methods and paradigms on the same meta-test episodes."""
    rows = ["| method | meta-test accuracy % (± 95% CI) | s / meta-iteration | autograd MiB / meta-iteration | "
            "wall s |", "|---|---|---|---|---|"]
    for name, r in d["runs"].items():
        rows.append(_row(LABELS[name], r["test"]["mean"], r["test"]["ci95"], r["seconds_per_meta_iteration"],
                         r["graph_mib_per_meta_iteration"], f"{d['wall_seconds'][name]:.0f}"))
    hosts = [name for name, r in d["runs"].items() if r.get("baselines")]
    for host in hosts:
        rows += [_row(LABELS[name], b["mean"], b["ci95"], b["train_seconds_per_step"], None, "–")
                 for name, b in d["runs"][host]["baselines"].items()]
    episodes = only([r["test"]["episodes"] for r in d["runs"].values()], "meta-test episodes")
    text = f"{episodes} meta-test episodes, the same for every row (drawn from (seed, split, index)). "
    for host in hosts:
        text += (f"{LABELS[host].split(' (')[0]}'s wall time includes the baselines, which run in its directory. "
                 "Baselines: s / iteration is one cross-entropy step of the shared network (trained on the meta-train "
                 "classes, as above); their episodes are scored with that one network. ")
    return "\n".join([*rows, "", text + "Autograd MiB: the distinct tensor storages saved for the backward pass of "
                      f"one meta-iteration (one meta-batch). {measured(d['info'], 'benchmarks/meta_results.py')}"])


def meta_iterations(schedule: list[str]) -> int:
    """Meta-iterations of a run from its recorded overrides: epochs x training episodes / meta-batch."""
    opts = dict(zip(schedule[::2], schedule[1::2], strict=True))
    return int(opts["--trainer.max_epochs"]) * int(opts["--episodes.train_episodes"]) // int(
        opts["--episodes.meta_batch"])


@section("meta-ksweep", PAGE, KSWEEP, "benchmarks/meta_ksweep.py")
def meta_ksweep(d: dict[str, Any]) -> str:
    """Meta-gradient norm, accuracy, time and memory against the number of inner steps K."""
    rows = [f"| method | K | meta-grad norm, first iteration | mean over {meta_iterations(d['info']['schedule'])} | "
            "meta-test accuracy % (± 95% CI) | s / meta-iteration | autograd MiB / meta-iteration |",
            "|---|---|---|---|---|---|---|"]
    for method, points in d["points"].items():
        rows += [f"| {method} | {p['K']} | {p['grad_norm_first']:.3g} | {p['grad_norm_mean']:.3g} | "
                 f"{100 * p['accuracy']:.1f} ± {100 * p['ci95']:.1f} | {p['seconds_per_meta_iteration']:.3f} | "
                 f"{p['graph_mib']:.1f} |" for p in points]
    return "\n".join([*rows, "", "![meta-gradient norm, accuracy and time against K](img/meta-ksweep.png)", "",
                      measured(d["info"], "benchmarks/meta_ksweep.py")])


@section("meta-sinusoid", PAGE, SINUSOID, "benchmarks/meta_sinusoid.py")
def meta_sinusoid(d: dict[str, Any]) -> str:
    """MAML, first-order MAML and multi-task pretraining on sinusoid regression."""
    rows = ["| method | meta-test MSE after adaptation (± 95% CI) | s / meta-iteration | wall s |", "|---|---|---|---|"]
    rows += [f"| {name} | {r['mse']:.3f} ± {r['ci95']:.3f} | {r['seconds_per_meta_iteration']:.4f} | "
             f"{r['wall_seconds']:.0f} |" for name, r in d["rows"].items()]
    episodes = only([r["episodes"] for r in d["rows"].values()], "meta-test sinusoids")
    return "\n".join([*rows, "", f"{episodes} meta-test sinusoids, the same for every row. "
                      f"{measured(d['info'], 'benchmarks/meta_sinusoid.py')}"])
