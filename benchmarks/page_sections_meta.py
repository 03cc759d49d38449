"""The renderers of docs/meta-learning.md's generated sections (see ``benchmarks/pages.py``): JSON in, markdown out.

``benchmarks/meta_results.py``, ``benchmarks/meta_ksweep.py`` and ``benchmarks/meta_sinusoid.py`` measure and write
the JSON; every number below is read from it (or derived from its fields, like the meta-iteration count from the
recorded schedule), none is typed in. The reading sections (``meta-results-reading``, ``meta-ksweep-answers``) decide
their comparative words from the numbers too: "the same within the CIs" means the two 95% intervals overlap, and the
cores are called shared only when a recorded 1-minute load average exceeded the core count.
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


# --- what the tables say: every comparison below is decided from the numbers, none is typed in ---------------------

def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two results' 95% intervals (``mean`` ± ``ci95``) overlap: "the same within the CIs"."""
    return abs(a["mean"] - b["mean"]) <= a["ci95"] + b["ci95"]


def _names(labels: list[str]) -> str:
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
    def group(names: list[str], role: str) -> str:
        many = len(names) > 1
        verb = role[0] if many else role[1]
        text = _names([labels.get(n, n) for n in names]) + (f" {verb}" if verb else "")
        if many:
            mutual = all(overlap(results[a], results[b]) for a in names for b in names)
            lead = labels.get(names[0], names[0])
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


@section("meta-results-reading", PAGE, RESULTS, "benchmarks/meta_results.py")
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


# meta_ksweep.py's method names -> the names its answers use
METHODS = {"maml": "MAML", "fomaml": "FOMAML"}


def _m(method: str) -> str:
    return METHODS.get(method, method)


def _fmt_ks(ks: list[int]) -> str:
    return _names([str(k) for k in ks])


def explode_or_vanish(points: dict[str, list[dict[str, Any]]], factor: float = 10.0) -> str:
    """Verdict on the meta-gradient norm against K: exploding (a non-finite iteration, or a mean norm over
    ``factor`` times K = 1's), vanishing (under 1 / ``factor`` of K = 1's), or neither."""
    kmax = max(p["K"] for ps in points.values() for p in ps)
    found = []
    for method, ps in points.items():
        rel = [p["grad_norm_mean"] / ps[0]["grad_norm_mean"] for p in ps]
        bad = sum(p["non_finite_iterations"] for p in ps)
        if bad or max(rel) > factor:
            found.append(f"{_m(method)}'s explodes ({bad} non-finite iterations, mean norm up to {max(rel):.1f}× "
                         f"K = {ps[0]['K']}'s)")
        if min(rel) < 1 / factor:
            found.append(f"{_m(method)}'s vanishes (mean norm down to {min(rel):.2g}× K = {ps[0]['K']}'s)")
    criterion = (f"criterion: a non-finite meta-gradient in any iteration, or a mean norm over the run more than "
                 f"{factor:g} times or less than 1/{factor:g} of K = 1's")
    if found:
        return f"Not in every case up to K = {kmax}: " + "; ".join(found) + f" ({criterion})"
    spans = ", ".join(f"{_m(m)}: {min(p['grad_norm_mean'] for p in ps) / ps[0]['grad_norm_mean']:.2g}× to "
                      f"{max(p['grad_norm_mean'] for p in ps) / ps[0]['grad_norm_mean']:.2g}×"
                      for m, ps in points.items())
    return (f"Neither up to K = {kmax}: no iteration has a non-finite meta-gradient, and at every K the mean norm "
            f"over the run stays within a factor of {factor:g} of K = 1's ({spans}; {criterion})")


def _acc(p: dict[str, Any]) -> dict[str, float]:
    return {"mean": p["accuracy"], "ci95": p["ci95"]}


def plateau(ps: list[dict[str, Any]]) -> tuple[dict[str, Any], int, list[int]]:
    """The best point, the smallest K within the CIs of it, and the larger Ks that fall outside them."""
    best = max(ps, key=lambda p: p["accuracy"])
    first = next(p["K"] for p in ps if overlap(_acc(p), _acc(best)))
    return best, first, [p["K"] for p in ps if p["K"] > first and not overlap(_acc(p), _acc(best))]


def inner_steps(points: dict[str, list[dict[str, Any]]]) -> str:
    """Verdict on one inner step against several: does any K beat K = 1 beyond the CIs, and where it levels off."""
    helped = [m for m, ps in points.items() if not overlap(_acc(ps[0]), _acc(plateau(ps)[0]))]
    verdict = ("Several" if len(helped) == len(points) else "One is enough: no K beats K = 1 beyond the CIs"
               if not helped else f"Several for {_names([_m(m) for m in helped])}")
    clauses, drops = [], []
    for m, ps in points.items():
        best, first, below = plateau(ps)
        clauses.append(f"{_m(m)}'s meta-test accuracy goes from {100 * ps[0]['accuracy']:.1f}% at K = {ps[0]['K']} to "
                       f"{100 * best['accuracy']:.1f}% at K = {best['K']} (its best), every K from {first} on "
                       "within the CIs of it" + (f" except K = {_fmt_ks(below)}" if below else ""))
        drops += [f"{_m(m)} at K = {k}" for k in below]
    last = max(plateau(ps)[1] for ps in points.values())
    tail = (f"past K = {last}, more steps add nothing the CIs can resolve" if not drops else
            f"more steps do not always help: {_names(drops)} fall below the best beyond the CIs")
    return f"{verdict}: " + "; ".join(clauses) + f"; {tail}."


def linear_growth(ps: list[dict[str, Any]], key: str, tolerance: float = 0.05) -> tuple[float, bool]:
    """Slope of ``key`` against K between the first and last points, and whether every point lies within
    ``tolerance`` (relative) of that line."""
    k0, v0, k1, v1 = ps[0]["K"], ps[0][key], ps[-1]["K"], ps[-1][key]
    slope = (v1 - v0) / (k1 - k0)
    return slope, all(abs(p[key] - (v0 + slope * (p["K"] - k0))) <= tolerance * p[key] for p in ps)


def _memory(ps: list[dict[str, Any]]) -> str:
    slope, linear = linear_growth(ps, "graph_mib")
    first, last = ps[0]["graph_mib"], ps[-1]["graph_mib"]
    how = ("do not grow with K" if abs(last - first) <= 0.05 * max(first, last) else
           f"{'grow' if slope > 0 else 'shrink'} linearly with K" if linear else
           f"{'grow' if slope > 0 else 'shrink'} with K, not linearly,")
    return (f"{how} (about {slope:.2f} MiB per inner step: {ps[0]['graph_mib']:.1f} MiB per meta-iteration at "
            f"K = {ps[0]['K']}, {ps[-1]['graph_mib']:.1f} MiB at K = {ps[-1]['K']})")


def orders(d: dict[str, Any]) -> str:
    """Second order against first order: accuracy per K by CI overlap, memory growth, and the time column's worth."""
    so, fo = d["points"]["maml"], d["points"]["fomaml"]
    differ = [(a["K"], _m("maml" if a["accuracy"] > b["accuracy"] else "fomaml"))
              for a, b in zip(so, fo, strict=True) if not overlap(_acc(a), _acc(b))]
    text = ("The same accuracy within the CIs at every K" if not differ else
            "Different accuracy beyond the CIs at " + _names([f"K = {k} ({m} higher)" for k, m in differ]))
    text += (f". MAML's saved tensors {_memory(so)}; FOMAML's {_memory(fo)}; second order also pays a double "
             "backward pass")
    slower = [a["K"] for a, b in zip(so, fo, strict=True)
              if b["seconds_per_meta_iteration"] > a["seconds_per_meta_iteration"]]
    info = d["info"]
    text += (f". The load was recorded only at the start and end of the sweep ({load_words(info)}), not per point"
             + (", and the cores were oversubscribed, so the time column is only indicative" if oversubscribed(info)
                else ""))
    if slower:
        text += (f": it shows FOMAML, which skips the second-order pass and so does less "
                 f"work per iteration, slower than MAML at K = {_fmt_ks(slower)}")
    return text + "."


@section("meta-ksweep-answers", PAGE, KSWEEP, "benchmarks/meta_ksweep.py")
def meta_ksweep_answers(d: dict[str, Any]) -> str:
    """The founding notes' three questions about K, answered from the sweep's points."""
    info, points = d["info"], d["points"]
    opts = dict(zip(info["schedule"][::2], info["schedule"][1::2], strict=True))
    so, fo = points["maml"], points["fomaml"]
    first = [a["grad_norm_first"] / b["grad_norm_first"] for a, b in zip(so, fo, strict=True)]
    mean = [a["grad_norm_mean"] / b["grad_norm_mean"] for a, b in zip(so, fo, strict=True)]
    ratio = (f"MAML's meta-gradient norm at the first iteration is {min(first):.1f} to {max(first):.1f} times "
             f"FOMAML's ({min(mean):.1f} to {max(mean):.1f} times in the mean over the run)")
    if min(first) > 1:  # same seed: same weights and episodes at iteration 1, so MAML - FOMAML is the 2nd-order term
        ratio += (f"; both start from the same seed, so the second-order term FOMAML drops is at least "
                  f"{100 * (1 - 1 / min(first)):.0f}% of MAML's norm there")
    rest = {m: [p["grad_norm_mean"] for p in ps[1:]] for m, ps in points.items()}
    norms = "; ".join(f"{_m(m)}'s mean norm is {ps[0]['grad_norm_mean']:.3g} at K = {ps[0]['K']} and "
                      f"{min(rest[m]):.3g} to {max(rest[m]):.3g} for K = {ps[1]['K']} to {ps[-1]['K']}"
                      for m, ps in points.items())
    longest = max(((m, p) for m, ps in points.items() for p in ps), key=lambda mp: mp[1]["wall_seconds"])
    return "\n".join([
        f"Measured answers, for this setting (`{info['recipe']}`, inner lr {opts['--inner.lr']}, "
        f"{meta_iterations(info['schedule'])} meta-iterations):", "",
        f"* **Exploding or vanishing?** {explode_or_vanish(points)}. {ratio}. {norms}. "
        "Not measured here: a larger inner learning rate or a deeper network should shrink the stable range, since "
        "each inner step multiplies the backpropagated meta-gradient by (I − αH).",
        f"* **One inner step or several?** {inner_steps(points)}",
        f"* **Second order or first order?** {orders(d)}", "",
        f"The sweep took {info['wall_seconds'] / 60:.0f} minutes of wall time ({load_words(info)}); the longest "
        f"point, {_m(longest[0])} at K = {longest[1]['K']}, took {longest[1]['wall_seconds']:.0f} s."])
