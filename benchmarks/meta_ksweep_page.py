"""Renderers of docs/meta-learning.md's K sweep (table and answers) from ``docs/data/meta-ksweep.json``, which
``python -m benchmarks.meta_ksweep`` writes. The answers' verdicts (exploding or vanishing, one step or several,
second order or first) are decided here from the sweep's points, by CI overlap and the recorded load."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import table
from benchmarks.meta_results_page import load_words, measured, names, overlap, oversubscribed


def meta_iterations(schedule: list[str]) -> int:
    """Meta-iterations of a run from its recorded overrides: epochs x training episodes / meta-batch."""
    opts = dict(zip(schedule[::2], schedule[1::2], strict=True))
    return int(opts["--trainer.max_epochs"]) * int(opts["--episodes.train_episodes"]) // int(
        opts["--episodes.meta_batch"])


def meta_ksweep(d: dict[str, Any]) -> str:
    """Meta-gradient norm, accuracy, time and memory against the number of inner steps K."""
    points = [[method, p["K"], f"{p['grad_norm_first']:.3g}", f"{p['grad_norm_mean']:.3g}",
             f"{100 * p['accuracy']:.1f} ± {100 * p['ci95']:.1f}", f"{p['seconds_per_meta_iteration']:.3f}",
             f"{p['graph_mib']:.1f}"] for method, ps in d["points"].items() for p in ps]
    rows = table(["method", "K", "meta-grad norm, first iteration",
                  f"mean over {meta_iterations(d['info']['schedule'])}", "meta-test accuracy % (± 95% CI)",
                  "s / meta-iteration", "autograd MiB / meta-iteration"], points)
    return "\n".join([*rows, "", "![meta-gradient norm, accuracy and time against K](img/meta-ksweep.png)", "",
                      measured(d["info"], "benchmarks/meta_ksweep.py")])


# meta_ksweep.py's method names -> the names its answers use
METHODS = {"maml": "MAML", "fomaml": "FOMAML"}


def _m(method: str) -> str:
    return METHODS.get(method, method)


def _fmt_ks(ks: list[int]) -> str:
    return names([str(k) for k in ks])


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
               if not helped else f"Several for {names([_m(m) for m in helped])}")
    clauses, drops = [], []
    for m, ps in points.items():
        best, first, below = plateau(ps)
        clauses.append(f"{_m(m)}'s meta-test accuracy goes from {100 * ps[0]['accuracy']:.1f}% at K = {ps[0]['K']} to "
                       f"{100 * best['accuracy']:.1f}% at K = {best['K']} (its best), every K from {first} on "
                       "within the CIs of it" + (f" except K = {_fmt_ks(below)}" if below else ""))
        drops += [f"{_m(m)} at K = {k}" for k in below]
    last = max(plateau(ps)[1] for ps in points.values())
    tail = (f"past K = {last}, more steps add nothing the CIs can resolve" if not drops else
            f"more steps do not always help: {names(drops)} fall below the best beyond the CIs")
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
            "Different accuracy beyond the CIs at " + names([f"K = {k} ({m} higher)" for k, m in differ]))
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
