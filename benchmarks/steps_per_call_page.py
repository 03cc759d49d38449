"""Renderer of docs/concepts.md's ``speed.steps_per_call`` section from ``docs/data/steps-per-call.json``, which
``python -m benchmarks.steps_per_call`` writes: our epoch at K = 1, 4, 16 against the bare loop, per round."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp, table


def _seconds(s: dict[str, Any]) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f} … {s['max']:.3f})"


def timing(d: dict[str, Any]) -> str:
    """Per regime: epoch seconds and the throughput ratio to the bare loop (ratio of medians, every round's) per K."""
    out = [f"Measured by `python -m benchmarks.steps_per_call` ({stamp(d['provenance'])}); profile {d['profile']}."]
    for g in d["regimes"].values():
        out += ["", *_regime(g)]
    return "\n".join(out + ["", "\"met\" needs the ratio of medians and every round's ratio at 0.95 or above; "
                             "\"within noise\": some rounds clear it and some do not."])


def _regime(d: dict[str, Any]) -> list[str]:
    loads = [round(x[0], 2) for x in d["load_average_per_round"]]
    rows = []
    for k in d["steps_per_call"]:
        r = d["lightning_over_torch"][str(k)]
        rows.append([f"`steps_per_call: {k}`", _seconds(d["seconds"][f"ours_k{k}"]), f"{r['value']:.3f}",
                     f"{r['min']:.3f} … {r['max']:.3f}", r["verdict"]])
    p = d["plain_over_torch"]
    rows.append(["plain `Trainer`, same math (K = 1)", _seconds(d["seconds"]["plain"]), f"{p['value']:.3f}",
                 f"{p['min']:.3f} … {p['max']:.3f}", "-"])
    return [f"**Regime {d['regime']}**: {d['data']}, backbone `{d['backbone']}`, a bare step of "
            f"{d['bare_step_ms']:.2f} ms; {d['rounds']} interleaved rounds, 1-minute load average per round {loads}.",
            "", *table(["our epoch", "epoch s, median (min … max)", "bare epoch / ours, ratio of medians",
                        "per round (min … max)", "goal >= 0.95"], rows)]
