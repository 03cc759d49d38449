"""Renderers of the capital-question sections of docs/prompt-results-lm.md from ``docs/data/prompt_capital.json``,
which ``python -m benchmarks.prompt_capital`` writes: the setting, the paraphrases zero-shot, the soft prompts by
initialisation and seed, the free-running sampling modes beside teacher forcing, and the shallow prompt beside the
deep one."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.markdown import mean_std, pct, stamp, table


def _spread(values: list[float]) -> float:
    return max(values) - min(values) if values else 0.0


def _runs(d: dict[str, Any], init: str, objective: str, kind: str = "shallow") -> list[dict[str, Any]]:
    """The runs of one init, objective and depth (runs measured before depths existed are shallow)."""
    return [r for r in d["runs"] if r["init"] == init and r["objective"] == objective
            and r.get("kind", "shallow") == kind]


def _provenance(d: dict[str, Any]) -> str:
    """Which invocation measured what: this one's stamp, and when runs were reused, the earlier invocations'."""
    p = d["provenance"]
    head = (f"{stamp(p)}; load average at the end {', '.join(map(str, p['load_average_at_end']))}")
    if not d.get("reused_runs"):
        return f"Measured on {head}."
    earlier = d.get("earlier", [])
    unstamped = d["reused_runs"] - sum(e["measured_runs"] for e in earlier)
    parts = [f"{e['measured_runs']} by the invocation on {stamp(e)}" for e in earlier]
    parts += [f"{unstamped} by an earlier invocation whose stamp was not kept"] if unstamped > 0 else []
    return (f"The last invocation of the script ran on {head}; it measured {d['measured_runs']} runs and reused "
            f"{d['reused_runs']} that earlier invocations had measured ({'; '.join(parts)}). Runs measured since "
            f"runs are stamped one by one carry their own commit and load, named where they are shown.")


def setting(d: dict[str, Any]) -> str:
    """Machine, threads, load, date, commit, wall time, and the task's setting."""
    s = d["setting"]
    dropped = ", ".join(s["dropped"]) or "none"
    return "\n".join([
        f"{_provenance(d)} The base (`{s['base']}`, sha256 `{s['sha256'][:16]}…`) loaded in "
        f"{s['load_seconds']:.0f} s; the script took "
        f"{d['wall_seconds'] / 60:.1f} min for {d['measured_runs']} runs"
        + (" (each run's own seconds are in the tables)" if d.get("reused_runs") else "") + ".", "",
        f"Countries: {s['train_countries']} for training, {s['test_countries']} held out for every score below "
        f"(left out because their capital holds a full stop: {dropped}). Text format: {s['format']}. Soft prompts: "
        f"{s['prompt_length']} vectors (the token count of \"{s['init_text']}\"), followed by the input "
        f"`{s['input'].strip()}`; Adam, learning rate {s['lr']}, {s['steps']} steps of {s['batch']} questions; "
        f"teacher-forced runs with seeds {', '.join(map(str, s['seeds']))}, free-running runs with seed(s) "
        f"{', '.join(map(str, s['sampling_seeds']))}"
        + (f", deep runs (one set of {s['prompt_length']} vectors for each of the {s['layers']} layers) with seed(s) "
           f"{', '.join(map(str, s['deep_seeds']))}" if s.get("deep_seeds") else "") + "."])


def zero_shot(d: dict[str, Any]) -> str:
    """One row per paraphrase: exact match and answer loss on the held-out countries; then their spread."""
    rows = [[f"`{r['template']}`".replace("\n", "\\n"), pct(r["exact_match"], 1), f"{r['answer_loss']:.2f}",
             "; ".join(f"{c}: {a!r}" for c, _, a in r["examples"][:3])] for r in d["zero_shot"]]
    em = [r["exact_match"] for r in d["zero_shot"]]
    best = max(d["zero_shot"], key=lambda r: r["exact_match"])
    return "\n".join([*table(["question (zero-shot)", "exact match %", "answer loss (nats/token)",
                              "first answers"], rows), "",
                      f"Across these {len(em)} wordings of one question, exact match ranges from {pct(min(em), 1)}% "
                      f"to {pct(max(em), 1)}% (a spread of {pct(_spread(em), 1)} points; standard deviation "
                      f"{pct(statistics.pstdev(em), 1)}); the best is `{best['template']}`.".replace("\n", "\\n")])


def soft(d: dict[str, Any]) -> str:
    """Teacher-forced soft prompts by initialisation: exact match per seed and their spread beside the paraphrases'."""
    zs = [r["exact_match"] for r in d["zero_shot"]]
    rows, spreads = [], {}
    for init in dict.fromkeys(r["init"] for r in d["runs"]):
        runs = _runs(d, init, "teacher forcing")
        if not runs:
            continue
        em = [r["exact_match"] for r in runs]
        spreads[init] = _spread(em)
        rows.append([init, mean_std(em, digits=1), ", ".join(pct(x, 1) for x in em), pct(spreads[init], 1),
                     f"{statistics.mean(r['answer_loss'] for r in runs):.2f}",
                     f"{statistics.mean(r['seconds_per_step'] for r in runs):.2f}",
                     " ".join(f"{t!r} ({c:.2f})" for t, c in zip(runs[0]["nearest_tokens_end"],
                                                                 runs[0]["nearest_cosines_end"], strict=True))])
    english = _runs(d, "English", "teacher forcing")
    start = d["zero_shot"][0]["exact_match"]
    gain = statistics.mean(r["exact_match"] for r in english) - start if english else 0.0
    widest = max(spreads.values(), default=0.0)
    verdict = ("narrower than" if widest < _spread(zs) else "as wide as or wider than")
    same = ("it is the first paraphrase, token for token" if d["setting"]["english_start_is_first_paraphrase"]
            else "the first paraphrase's score; their tokens differ")
    return "\n".join([*table(["soft prompt init", "exact match % (mean ± std)", "per seed", "seed spread (points)",
                              "answer loss", "s / step", "nearest token (cosine) at the end, first seed"], rows), "",
                      f"The English start scores {pct(start, 1)}% before training ({same}); "
                      f"trained, {pct(start + gain, 1)}% on average ({'+' if gain >= 0 else ''}{pct(gain, 1)} "
                      f"points). The widest spread across seeds of one initialisation ({pct(widest, 1)} points) is "
                      f"{verdict} the paraphrases' spread ({pct(_spread(zs), 1)} points)."])


def sampling(d: dict[str, Any]) -> str:
    """The English start trained by each objective (teacher forcing, free-running argmax / Gumbel-ST / expected)."""
    rows = []
    for objective in ("teacher forcing", "argmax", "gumbel_st", "expected"):
        runs = _runs(d, "English", objective)
        if runs:
            tail = [statistics.mean(r["train_losses"][-5:]) for r in runs]
            rows.append([objective, mean_std([r["exact_match"] for r in runs], digits=1),
                         f"{statistics.mean(r['answer_loss'] for r in runs):.3f}", f"{statistics.mean(tail):.3f}",
                         f"{statistics.mean(r['seconds_per_step'] for r in runs):.2f}", len(runs)])
    return "\n".join(table(["training objective", "held-out exact match %", "held-out answer loss (teacher-forced)",
                            "own training loss, last 5 steps", "s / step", "seeds"], rows))


def _measured(runs: list[dict[str, Any]]) -> str:
    """Each run's own commit, date and load (1-minute average at its start and end), where it recorded them."""
    stamps = []
    for r in runs:
        if "measured" in r:
            m = r["measured"]
            commit = m["commit"] + (" with uncommitted changes" if m.get("dirty") else "")
            stamps.append(f"seed {r['seed']}: {m['date']}, commit `{commit}`, {m['torch_threads']} torch thread(s), "
                          f"load average {m['load_average'][0]} at the start and {m['load_average_at_end'][0]} at "
                          "the end")
    return "; ".join(stamps) or "not recorded (measured before runs were stamped one by one)"


def depth(d: dict[str, Any]) -> str:
    """The English start trained with teacher forcing as a shallow and as a deep prompt, and each run's stamp."""
    s, rows, means = d["setting"], [], {}
    layers = s.get("layers")
    for kind in ("shallow", "deep"):
        runs = _runs(d, "English", "teacher forcing", kind)
        if not runs:
            continue
        em = [r["exact_match"] for r in runs]
        means[kind] = (statistics.mean(em), min(em), max(em))
        vectors = s["prompt_length"] * (layers if kind == "deep" and layers else 1)
        rows.append([kind, vectors, mean_std(em, digits=1), ", ".join(pct(x, 1) for x in em),
                     f"{statistics.mean(r['answer_loss'] for r in runs):.2f}",
                     f"{statistics.mean(r['seconds_per_step'] for r in runs):.2f}", _measured(runs)])
    lines = table(["English start, teacher forcing", "trained vectors", "exact match % (mean ± std)", "per seed",
                   "answer loss", "s / step", "measured"], rows)
    if len(means) == 2:
        (sm, slo, shi), (dm, dlo, dhi) = means["shallow"], means["deep"]
        overlap = "overlap" if dlo <= shi and slo <= dhi else "do not overlap"
        lines += ["", f"Both start from the first paraphrase's tokens "
                  f"({pct(d['zero_shot'][0]['exact_match'], 1)}% zero-shot; the deep start holds the states those "
                  f"tokens have, up to rounding). Trained, the deep prompt averages {pct(dm, 1)}% against the "
                  f"shallow prompt's {pct(sm, 1)}% ({'+' if dm >= sm else ''}{pct(dm - sm, 1)} points); the seeds' "
                  f"ranges ({pct(slo, 1)}–{pct(shi, 1)} shallow, {pct(dlo, 1)}–{pct(dhi, 1)} deep) {overlap}. "
                  "Seconds per step compare only runs measured at the same load (see each run's stamp)."]
    return "\n".join(lines)
