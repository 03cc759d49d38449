"""Renderers of docs/meta-learning.md's results table and its reading from ``docs/data/meta-results.json``, which
``python -m benchmarks.meta_results`` writes; also the load and CI helpers the other meta sections share.

Every number is read from the JSON or derived from its fields, none is typed in. The reading decides its comparative
words from the numbers too: "the same within the CIs" means the two 95% intervals overlap, and the cores are called
shared only when a recorded 1-minute load average exceeded the core count.
"""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import cells, table

# meta_results.py's run and baseline names -> row labels
LABELS = {"maml": "MAML (second order)", "fomaml": "first-order MAML", "anil": "ANIL (head only)",
          "maml_meta_sgd": "MAML + Meta-SGD (learned inner lr per tensor)",
          "feature_extraction": "feature extraction + logistic head", "fine_tuning": "fine-tuning",
          "nearest_mean": "nearest class mean", "nearest_neighbour": "1-nearest neighbour"}


def loads(info: dict[str, Any]) -> tuple[float, float]:
    """The 1-minute load averages recorded at the start and at the end of a benchmark."""
    return info["machine"]["load_average_at_start"][0], info["load_average_at_end"][0]


def oversubscribed(info: dict[str, Any]) -> bool:
    """Whether a recorded 1-minute load average (start or end) exceeded the machine's core count."""
    return max(loads(info)) > info["machine"]["cores"]


def load_words(info: dict[str, Any]) -> str:
    """'1-minute load average A at start, B at end, on N cores' (the sections' one wording of the load)."""
    start, end = loads(info)
    return f"1-minute load average {start:g} at start, {end:g} at end, on {info['machine']['cores']} cores"


def measured(info: dict[str, Any], script: str) -> str:
    """The sentence naming the machine, load, threads, commit and total time of a meta benchmark's runs.

    The cores are called shared only when a recorded load average exceeded their number.
    """
    m = info["machine"]
    threads = f"{info['threads']} thread" + ("" if info["threads"] == 1 else "s")
    cores = f"{m['cores']} cores" + (" shared with other jobs" if oversubscribed(info) else "")
    return (f"Measured {m['date']} on {m['cpu']} ({cores}, load average "
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
    return cells([label, f"{100 * mean:.1f} ± {100 * ci:.1f}", s, m, wall])


def meta_results(d: dict[str, Any]) -> str:
    """The methods and paradigms on the same meta-test episodes."""
    rows = table(["method", "meta-test accuracy % (± 95% CI)", "s / meta-iteration",
                  "autograd MiB / meta-iteration", "wall s"], [])
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


# --- what the table says: every comparison below is decided from the numbers, none is typed in --------------------

def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two results' 95% intervals (``mean`` ± ``ci95``) overlap: "the same within the CIs"."""
    return abs(a["mean"] - b["mean"]) <= a["ci95"] + b["ci95"]


def names(labels: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def tiers(results: dict[str, dict[str, float]]) -> list[list[str]]:
    """Names from best to worst mean, grouped: a name joins the group of the best one whose CI it overlaps."""
    order = sorted(results, key=lambda n: -results[n]["mean"])
    groups: list[list[str]] = []
    for name in order:
        if groups and overlap(results[groups[-1][0]], results[name]):
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def ranking(results: dict[str, dict[str, float]], labels: dict[str, str]) -> str:
    """'A and B are best, within the CIs of each other; C comes next; then D; E trails', from the results."""
    def group(members: list[str], role: tuple[str, str]) -> str:
        many = len(members) > 1
        verb = role[0] if many else role[1]
        text = names([labels.get(n, n) for n in members]) + (f" {verb}" if verb else "")
        if many:
            mutual = all(overlap(results[a], results[b]) for a in members for b in members)
            lead = labels.get(members[0], members[0])
            text += ", within the CIs of each other" if mutual else f", each within the CIs of {lead}"
        return text
    groups = tiers(results)
    parts = [group(groups[0], ("are best", "is best"))]
    if len(groups) > 1:
        parts.append(group(groups[1], ("come next", "comes next")))
    parts += ["then " + group(g, ("", "")) for g in groups[2:-1]]
    if len(groups) > 2:
        parts.append(group(groups[-1], ("trail", "trails")))
    return "; ".join(parts)


def accuracies(d: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Every row of the meta-results table (runs and baselines) as ``{name: {"mean", "ci95"}}``."""
    out = {name: r["test"] for name, r in d["runs"].items()}
    for r in d["runs"].values():
        out.update(r.get("baselines", {}))
    return {name: {"mean": r["mean"], "ci95": r["ci95"]} for name, r in out.items()}


def meta_results_reading(d: dict[str, Any]) -> str:
    """The ranking of the meta-results rows by CI overlap, and how far the time column can be trusted."""
    acc = accuracies(d)
    short = {name: label.split(" (")[0] for name, label in LABELS.items()}
    text = f"What the table says, for this small setting: {ranking(acc, short)}."
    if {"nearest_mean", "nearest_neighbour"} <= set(acc):
        same = acc["nearest_mean"] == acc["nearest_neighbour"]
        text += (" The nearest class mean and 1-nearest neighbour rows are " +
                 ("identical: in 1-shot tasks the class mean *is* the single support example, so they are the same "
                  "classifier." if same else "not identical."))
    info = d["info"]
    if oversubscribed(info):
        text += (" The s / meta-iteration column was measured while other jobs loaded the cores "
                 f"({load_words(info)}): compare it only as a rough order of magnitude;")
    else:
        text += f" The s / meta-iteration column was measured at a {load_words(info)};"
    return text + " the autograd memory column does not depend on the load."
