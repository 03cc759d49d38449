"""Renderers of docs/benchmarks.md's sections from a benchmark suite result (``docs/data/benchmarks.json``, which
``python -m benchmarks.run --write-docs`` writes): every sentence with a number or a judgement is filled from the
result; the page's prose is Markdown."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import table
from benchmarks.suite_timing import GOALS, STEPS_PER_CALL, spread

#: ratio keys of a regime, in page order, with what each compares
RATIOS = {
    "lightning_over_torch": "bare epoch time / our epoch time (throughput ours / bare)",
    **{f"lightning_k{k}_over_torch": f"bare epoch time / our epoch time at `speed.steps_per_call: {k}`"
       for k in STEPS_PER_CALL},
    "plain_over_torch": "bare epoch / the same math as the smallest LightningModule under a plain `Trainer`",
    "ours_over_plain": "that plain-`Trainer` epoch / our epoch (what the engine adds to Lightning's loop)",
    "cached_over_ce": "cached-KD epoch / our CE epoch",
    "online_over_ce": "online-KD epoch (teacher runs every batch) / our CE epoch",
    "stock_bar_over_ours": "our CE epoch with Lightning's stock rich bar / with the engine's default bar",
    "build_over_inference": "bare inference time / cache-build time over the same loader (throughput build / bare)",
}
#: epoch-seconds variants, in page order
VARIANTS = {
    "ours": "our CE epoch (engine default callbacks, default progress bar)",
    "ours_stock_bar": "the same with Lightning's stock `RichProgressBar`",
    **{f"ours_k{k}": f"our CE epoch at `speed.steps_per_call: {k}` ({k} optimizer steps per Lightning step)"
       for k in STEPS_PER_CALL},
    "torch": "bare loop: forward, cross-entropy, backward, SGD step",
    "cached": "our cached-KD epoch (generation 1, clean cache)",
    "online": "our online-KD epoch (generation 1, teacher run per batch)",
    "empty_step": "our fit with an empty `training_step` (returns a constant)",
    "plain": "the smallest LightningModule (cross-entropy step) under a plain `Trainer`: no logger, checkpoint, bar",
    "plain_empty": "the same with an empty `training_step`",
    "data_only": "bare loop drawing the batches only",
    "build": "engine cache build (predict loop, writer, fsync, sha256, manifest)",
    "inference": "bare `inference_mode` loop of the teacher over the same loader",
}
PROFILE_ROWS = 14
BYTES_GOAL, TOPK_GOAL = 40.0, 0.2


def page_name(result: dict[str, Any]) -> str:
    """``benchmarks.md`` for CPU profiles, ``benchmarks-gpu.md`` for the GPU ones."""
    return "benchmarks-gpu.md" if result["profile"].startswith("gpu") else "benchmarks.md"


def _f(value: Any, digits: int = 3) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _goal(entry: dict[str, Any]) -> str:
    return f"{entry['goal'][0]} {entry['goal'][1]}" if entry["goal"] else "report"


def _machine(r: dict[str, Any]) -> str:
    m = r["machine"]
    loads = [round_load[0] for reg in r["regimes"].values() for round_load in reg["load_average_per_round"]]
    dirty = m["dirty_files"]
    tree = "unknown" if dirty is None else "clean tree" if dirty == 0 else f"{dirty} uncommitted file(s) in the tree"
    s = r["settings"]
    return "\n".join([
        "| | |", "|---|---|",
        f"| machine | {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'} |",
        f"| torch threads | {m['torch_threads']} |",
        f"| load average (1, 5, 15 min) | {m['load_average_at_start']} at the start, {r['load_average_at_end']} at "
        f"the end; 1-minute load at the start of the timing rounds {min(loads):.2f} to {max(loads):.2f} |",
        f"| date | {m['date']} |",
        f"| commit | `{m['commit']}` ({tree}) |",
        f"| versions | torch {m['torch']}, lightning {m['lightning']} |",
        f"| settings | dataset {s['dataset']}, device {s['device']}, precision {s['precision']}, channels_last "
        f"{s['channels_last']}, compile {s['compile']}, {s['rounds']} rounds, timed epoch: last of "
        f"{s['warmup_epochs'] + 1} |",
    ])


def goals(r: dict[str, Any]) -> str:
    """Every regime's goal ratios with their verdicts."""
    rows = [[name, f"`{k}`", f"{reg[k]['value']:.3f}", f"{reg[k]['min']:.3f} to {reg[k]['max']:.3f}", _goal(reg[k]),
             f"**{reg[k]['verdict']}**"] for name, reg in r["regimes"].items() for k in GOALS
            if k in reg]  # a result may predate a goal
    return "\n".join(table(["regime", "ratio", "ratio of medians", "per-round range", "goal", "verdict"], rows))


def _regime(name: str, g: dict[str, Any]) -> str:
    st = g["settings"]
    ratios = "\n".join(f"| `{k}` | {g[k]['value']:.3f} | {g[k]['min']:.3f} to {g[k]['max']:.3f} | {_goal(g[k])} | "
                       f"{g[k]['verdict']} | {how} |" for k, how in RATIOS.items() if k in g)
    secs = "\n".join(f"| {k} | {g['seconds'][k]['min']:.3f} | {g['seconds'][k]['median']:.3f} | "
                     f"{g['seconds'][k]['max']:.3f} | {how} |" for k, how in VARIANTS.items()
                     if k in g["seconds"])
    prof = list(g["profile_ms_per_step"].items())[:PROFILE_ROWS]
    profile = "\n".join(f"| `{k}` | {v:.3f} |" for k, v in prof)
    fl, pfl, ips, fin = g["floor_ms_per_step"], g["plain_floor_ms_per_step"], g["images_per_s"], \
        g["build_finish_seconds"]
    extra, above, plain, over_plain = g["extra_ms_per_step"], g["above_floor_ms_per_step"], \
        g["plain_extra_ms_per_step"], g["above_plain_ms_per_step"]
    real_over_empty = spread([a - b for a, b in zip(plain["values"], pfl["values"], strict=True)])
    calls = g["floor_python_calls_per_step"]
    call_rows = "\n".join(f"| {k} | {v['calls']:.0f} | {v['own_ms']:.3f} |" for k, v in calls.items())
    total_calls = sum(v["calls"] for v in calls.values())
    return f"""## Regime `{name}`

{g['data']}; backbone `{st['backbone']}`, batch {st['batch_size']}, cache-build batch {st['eval_batch_size']}.
Median step: bare loop {g['step_ms']['torch']:.2f} ms, ours {g['step_ms']['ours']:.2f} ms.

| ratio | ratio of medians | per-round range | goal | verdict | compares |
|---|---|---|---|---|---|
{ratios}

Epoch seconds over the rounds:

| variant | min | median | max | what |
|---|---|---|---|---|
{secs}

Throughput (medians): ours {ips['ours']:.0f} images/s, bare {ips['torch']:.0f} images/s; cache build
{ips['build']:.0f} images/s, bare inference {ips['inference']:.0f} images/s. The build's once-at-the-end work, inside
its time: fsync {fin['fsync']['median'] * 1000:.1f} ms, sha256 {fin['sha256']['median'] * 1000:.1f} ms (medians).

**Lightning floor**: an empty `training_step` under the run's `Trainer.fit`, against drawing the same batches in a
bare loop: {fl['median']:+.2f} ms per step (rounds {fl['min']:+.2f} to {fl['max']:+.2f}); under a plain `Trainer`
(no logger, checkpoint or progress bar; no callback but the benchmark's epoch clock) {pfl['median']:+.2f} ms (rounds
{pfl['min']:+.2f} to {pfl['max']:+.2f}), Lightning's own loop. Against the bare step of
{g['step_ms']['torch']:.2f} ms the floor alone bounds `lightning_over_torch` at {g['floor_bound']:.3f}. The smallest
LightningModule doing the bare loop's math under a plain `Trainer`, against the bare loop: {plain['median']:+.2f} ms
per step (rounds {plain['min']:+.2f} to {plain['max']:+.2f}); less the plain `Trainer`'s empty-step floor, round by
round, {_above(real_over_empty)}. Our epoch against the bare loop: {extra['median']:+.2f} ms per step (rounds
{extra['min']:+.2f} to {extra['max']:+.2f}); less the empty-step floor, round by round, {_above(above)}; less that
plain LightningModule's epoch, round by round, {_above(over_plain)}.

The floor fit's Python, per training step ({total_calls:.0f} function calls; `cProfile` over its training epochs,
checkpoint included, setup not; own times are inflated by the profiler, the counts are exact):

| package | calls/step | own ms/step under cProfile |
|---|---|---|
{call_rows}

Where one fit's time goes (Lightning `SimpleProfiler`, one extra fit after the rounds; ms per training step,
largest {len(prof)} actions; nested actions include their children):

| action | ms/step |
|---|---|
{profile}
"""


def _above(a: dict[str, Any]) -> str:
    """What is left above the floor, judged from every round: within noise of zero, or above / below in all."""
    where = f"{a['median']:+.2f} ms per step (rounds {a['min']:+.2f} to {a['max']:+.2f})"
    if a["min"] > 0:
        return f"{where}: above it in every round"
    if a["max"] < 0:
        return f"{where}: below it in every round"
    return f"{where}: within noise of zero"


def _accuracy(r: dict[str, Any]) -> str:
    acc = r["accuracy"]
    rows = "\n".join(f"| {k} | {_f(v, 2)} |" for k, v in acc.items())
    topk = r["topk_minus_full_points"]
    verdict = "-" if topk is None else "met" if abs(topk) <= TOPK_GOAL else "missed"
    diffs = "\n".join(f"| `{k}` | {_f(r[k], 2)} | {goal} | {v} |" for k, goal, v in (
        ("topk_minus_full_points", f"within +-{TOPK_GOAL}", verdict), ("replay_minus_online_points", "report", "-"),
        ("clean_minus_online_points", "report", "-")))
    note = f" ({r['note']})" if r.get("note") else ""
    se = ""
    if acc.get("clean_full") is not None:
        p, n = acc["clean_full"] / 100, r["test_images"]
        se = (f"\nThe binomial standard error of one accuracy near {100 * p:.0f} % on {n:,} test images is "
              f"{100 * (p * (1 - p) / n) ** 0.5:.2f} points; all students share one seed.\n")
    return f"""## Accuracy effects of the cache settings

Schedule: {r['schedule']}. Test accuracy in percent{note}:

| run | test accuracy % |
|---|---|
{rows}

| difference | points | goal | verdict |
|---|---|---|---|
{diffs}
{se}"""


def _ban(b: dict[str, Any]) -> str:
    gens = ", ".join(f"{s:.1f}" for s in b["train_seconds"])
    acc = ", ".join(f"{100 * a:.2f}" for a in b["test_acc"])
    ens = ", ".join(f"{100 * a:.2f}" for a in b["ensemble_acc"])
    return f"""## Whole born-again recipe

`BornAgainRun.run()` of a teacher and {b['generations'] - 1} students, {b['epochs']} epoch(s) each, {b['data']},
backbone `{b['backbone']}`, batch {b['batch_size']}: **{b['wall_seconds']:.1f} s** wall (data decoding before it:
{b['data_setup_seconds']:.1f} s). Fit seconds per generation: {gens}; test accuracy %: {acc}; ensembles of
generations 0..k: {ens}.
"""


def run(r: dict[str, Any]) -> str:
    """The command, profile and time of the measurement, and the machine table."""
    quick = f"\n> Profile `{r['profile']}`: small sizes; its numbers are indicative only.\n" if r["quick"] else ""
    return (f"Measured by `{r['command']}` (profile `{r['profile']}`, {r['seconds']} s); the result was saved as JSON "
            f"and\n`python -m benchmarks.run --render FILE` rewrites this page from it without measuring.{quick}\n\n"
            + _machine(r))


def regimes(r: dict[str, Any]) -> str:
    """One section per timing regime: ratios, epoch seconds, throughput, the Lightning floor, profiles."""
    return "\n".join(_regime(name, g) for name, g in r["regimes"].items())


def bytes_per_view(r: dict[str, Any]) -> str:
    """Bytes per cached view of each format against the top-k goal."""
    bpv = r["bytes_per_view"]
    return f"""## Bytes per cached view ({bpv['classes']} classes)

| format | bytes/view | goal | verdict |
|---|---|---|---|
| top-k, k=10 | {bpv['topk10']:.1f} | <= {BYTES_GOAL:.0f} | {'met' if bpv['topk10'] <= BYTES_GOAL else 'missed'} |
| full float16 | {bpv['full_float16']:.1f} | report | - |
| full float32 | {bpv['full_float32']:.1f} | report | - |"""


def accuracy(r: dict[str, Any]) -> str:
    """The accuracy effects of the cache settings, when the profile measured them."""
    return _accuracy(r) if "accuracy" in r else ""


def ban(r: dict[str, Any]) -> str:
    """The whole born-again recipe's wall time, when the profile measured it."""
    return _ban(r["ban"]) if "ban" in r else ""


def gpu(r: dict[str, Any]) -> str:
    """Which GPU the run used, or how to run the suite on one."""
    if r["machine"]["gpu"]:
        return f"This run used the GPU {r['machine']['gpu']}."
    return ("This run's machine had no GPU. `benchmarks/gpu.sh` runs profile `gpu` on one CUDA device; "
            "`benchmarks/gpu.sh --dry-run` runs the same code path on a CPU with tiny sizes.")
