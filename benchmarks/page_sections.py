"""The renderers of the generated page sections (see ``benchmarks/pages.py``): JSON in, markdown out, no measuring.

Every sentence with a number is built from the JSON; verdicts ("met", "not met") are computed here from the data.
"""

from __future__ import annotations

import statistics
from typing import Any

from pages import section, stamp
from rich.console import Console

from distill.summary import summary_table

QUICKSTART = "docs/data/quickstart.json"
RESULTS = "docs/data/results.json"
BACKBONES = "docs/data/backbones.json"


def rich_table(summary: dict[str, Any]) -> str:
    """The end-of-run table exactly as ``distill run`` prints it (120 columns, no colour)."""
    console = Console(width=120, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(summary_table(summary))
    return console.export_text().rstrip("\n")


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    v = [scale * x for x in values]
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{statistics.mean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}"


# ---------------------------------------------------------------------------------------------------- quick start

def _quickstart_intro(d: dict[str, Any]) -> str:
    return (f"The quick start ends with this table (`{d['command']}`, seed {d['summary']['seed']}; "
            f"{d['wall_seconds']:.0f} s wall time for the whole command after install; {stamp(d['provenance'])}; "
            f"written by `python benchmarks/quickstart.py`):")


@section("quickstart-readme", "README.md", QUICKSTART, "benchmarks/quickstart.py")
def quickstart_readme(d: dict[str, Any]) -> str:
    return "\n".join([_quickstart_intro(d), "", "```", rich_table(d["summary"]), "```"])


@section("quickstart-page", "docs/quickstart.md", QUICKSTART, "benchmarks/quickstart.py")
def quickstart_page(d: dict[str, Any]) -> str:
    return quickstart_readme(d)


@section("recipes-digits", "docs/recipes.md", QUICKSTART, "benchmarks/quickstart.py")
def recipes_digits(d: dict[str, Any]) -> str:
    s = d["summary"]
    gens = ", ".join(f"{pct(g['test']['acc'])}% (gen-{g['generation']})" for g in s["generations"])
    ens = ", ".join(f"{e['members'][0]}..{e['members'][-1]} {pct(e['test']['acc'])}%" for e in s["ensembles"])
    train = ", ".join(pct(g["train"]["acc"]) for g in s["generations"])
    n_test = d["test_images"]
    return (f"Measured ({stamp(d['provenance'])}; seed {s['seed']}; {d['wall_seconds']:.0f} s for the whole command): "
            f"test accuracy {gens}; ensembles {ens}; training accuracy {train}%. One test image is "
            f"{100 / n_test:.2f} points of the {n_test} test digits.")


# ---------------------------------------------------------------------------------------------------- backbones

@section("backbones-small", "docs/backbones.md", BACKBONES, "benchmarks/backbones.py")
def backbones_small(d: dict[str, Any]) -> str:
    rows = ["| model | arguments | parameters | train acc % | test acc % | images/s (training) | epoch s |",
            "|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        args = ", ".join(f"{k}={v}" for k, v in r["init_args"].items()) or "—"
        rows.append(f"| `{r['name']}` | {args} | {r['parameters']:,} | {pct(r['train_acc'])} | {pct(r['test_acc'])} | "
                    f"{r['images_per_second']:,.0f} | {r['epoch_seconds']:.1f} |")
    return "\n".join([
        f"Measured by `python benchmarks/backbones.py` ({stamp(d['provenance'])}): each model trained from scratch by "
        f"`distill run {d['recipe']}` (generation 0 only) on {d['train_images']:,} {d['dataset']} training images, "
        f"{d['epochs']} epochs, {d['augmentation']}; training accuracy on the un-augmented training set, test "
        f"accuracy on all {d['test_images']:,} test images; images/s = training images seen per second of training "
        "(the engine's own loop, progress bar off).", "", *rows])


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


@section("backbones-families", "docs/backbones.md", BACKBONES, "benchmarks/backbones.py")
def backbones_families(d: dict[str, Any]) -> str:
    rows = ["| model | parameters (counted by `benchmarks/backbones.py`) | published | source |", "|---|---|---|---|"]
    for f in d["families"]:
        names = " / ".join(f"`{m}`" for m in f["models"])
        counts = " / ".join(_millions(n) for n in f["parameters"])
        rows.append(f"| {names} | {counts} ({f['num_classes']} classes) | {f['published']} | {f['source']} |")
    for r in d["rows"]:
        args = ", ".join(f"{k}={v}" for k, v in r["init_args"].items())
        label = f"`{r['name']}`" + (f" ({args})" if args else "")
        rows.append(f"| {label} | {_millions(r['parameters'])} (10 classes, grey) | — | distill |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------- results

def _runs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["seeds"][s] for s in sorted(entry["seeds"], key=int)]


def _diff_line(label: str, diffs: list[float]) -> str:
    return f"| {label} | {mean_std(diffs)} | {min(diffs) * 100:+.2f} … {max(diffs) * 100:+.2f} | " + \
        ", ".join(f"{100 * x:+.2f}" for x in diffs) + " |"


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def results_dataset(name: str, entry: dict[str, Any], goal: dict[str, float]) -> list[str]:
    """One dataset's tables: per generation and ensemble, paired differences, the goal's verdict, wall times."""
    runs = _runs(entry)
    gens = len(runs[0]["summary"]["generations"])
    out = [f"### {name}", "", f"`{entry['recipe']}` {' '.join(entry['overrides'])} — {entry['schedule']}.", "",
           "| model | train acc % | test acc % | NLL | ECE | test acc % per seed |", "|---|---|---|---|---|---|"]
    for k in range(gens):
        g = [r["summary"]["generations"][k] for r in runs]
        cells = [mean_std([x["train"]["acc"] for x in g]), mean_std([x["test"]["acc"] for x in g]),
                 mean_std([x["test"]["nll"] for x in g], 1, 3), mean_std([x["test"]["ece"] for x in g], 1, 3),
                 ", ".join(pct(x["test"]["acc"]) for x in g)]
        out.append(f"| gen-{k} | " + " | ".join(cells) + " |")
    for e in range(len(runs[0]["summary"]["ensembles"])):
        es = [r["summary"]["ensembles"][e] for r in runs]
        m = es[0]["members"]
        cells = ["", mean_std([x["test"]["acc"] for x in es]), mean_std([x["test"]["nll"] for x in es], 1, 3), "",
                 ", ".join(pct(x["test"]["acc"]) for x in es)]
        out.append(f"| ensemble {m[0]}..{m[-1]} | " + " | ".join(cells) + " |")
    acc = [[r["summary"]["generations"][k]["test"]["acc"] for r in runs] for k in range(gens)]
    out += ["", "Paired per-seed differences of test accuracy (points):", "",
            "| difference | mean ± std | min … max | per seed |", "|---|---|---|---|"]
    student_diffs = [[a - b for a, b in zip(acc[k], acc[k - 1], strict=True)] for k in range(1, gens)]
    for k, diffs in enumerate(student_diffs, start=1):
        out.append(_diff_line(f"gen-{k} − gen-{k - 1}", diffs))
    ens = None
    if runs[0]["summary"]["ensembles"]:
        last = [r["summary"]["ensembles"][-1] for r in runs]
        m = last[0]["members"]
        ens = [e["test"]["acc"] - a for e, a in zip(last, acc[0], strict=True)]
        out.append(_diff_line(f"ensemble {m[0]}..{m[-1]} − gen-0", ens))
    worst = min(statistics.mean(d) for d in student_diffs) if student_diffs else None
    if worst is not None and ens is not None:
        out += ["", f"Goal: every student ≥ its teacher − {goal['student_margin']:.1f} points (mean over seeds; the "
                f"worst student is {100 * worst:+.2f}) — {_verdict(100 * worst >= -goal['student_margin'])}; the "
                f"ensemble ≥ gen-0 + {goal['ensemble_gain']:.1f} points ({100 * statistics.mean(ens):+.2f}) — "
                f"{_verdict(100 * statistics.mean(ens) >= goal['ensemble_gain'])}."]
    cached = sorted(runs[0]["teacher_entropy"], key=int)
    if cached:
        out += ["", "Mean entropy of each teacher's soft labels on the training set (nats at T = 1; ln 10 = 2.30 is "
                "uniform, 0 is one-hot): " + ", ".join(
                    f"gen-{k} {mean_std([r['teacher_entropy'][k] for r in runs], 1, 3)}" for k in cached) + "."]
    out += ["", f"Seeds {', '.join(sorted(entry['seeds'], key=int))}; per run (whole command) wall / CPU seconds: "
            + ", ".join(f"{r['wall_seconds']:.0f} / {r.get('cpu_seconds', float('nan')):.0f}"
                        + (" (resumed: the rest of a stopped run)" if r.get("resumed") else "") for r in runs)
            + "; load average (1, 5, 15 min) at each start: "
            + "; ".join(", ".join(map(str, r["load_average"])) for r in runs)
            + f"; OpenMP threads per process: {', '.join(sorted({str(r.get('threads', 'default')) for r in runs}))}"
            + f"; measured at commit {', '.join(sorted({r.get('commit', 'unknown') for r in runs}))}"
            + f" on {', '.join(sorted({r.get('date', 'unknown') for r in runs}))}.", ""]
    return out


def results_variants(v: dict[str, Any]) -> list[str]:
    """The BAN-variant table: one row per teacher loss / teacher choice, students' test accuracy over seeds."""
    out = [f"### Born-Again variants on {v['dataset']}", "", v["description"], "",
           "| variant | " + " | ".join(v["columns"]) + " | seeds |", "|---|" + "---|" * (len(v["columns"]) + 1)]
    for row in v["rows"]:
        cells = [mean_std(row["values"][c]) if row["values"].get(c) else "—" for c in v["columns"]]
        out.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {len(row['seeds'])} |")
    return out + [""]


@section("results", "docs/results.md", RESULTS, "benchmarks/results.py")
def results_page(d: dict[str, Any]) -> str:
    body = [f"Machine and commit: {stamp(d['provenance'])}. Each run is a full `distill run` (all generations, cache "
            "builds and evaluation) on this machine's CPU; the schedules are in each section.", ""]
    for name, entry in d["datasets"].items():
        body += results_dataset(name, entry, d["goal"])
    if d.get("variants"):
        body += results_variants(d["variants"])
    return "\n".join(body)


@section("recipes-fashion", "docs/recipes.md", RESULTS, "benchmarks/results.py")
def recipes_fashion(d: dict[str, Any]) -> str:
    entry = d["datasets"]["fashion-mnist"]
    runs = _runs(entry)
    walls = [r["wall_seconds"] for r in runs]
    return "\n".join([
        f"Measured by `python benchmarks/results.py` ({stamp(d['provenance'])}), seeds "
        f"{', '.join(sorted(entry['seeds'], key=int))}: {min(walls):.0f}–{max(walls):.0f} s wall for the whole "
        "command. The full tables, with NLL, ECE and paired differences, are in [Results](results.md).", "",
        "| model | train acc % | test acc % (mean ± std) |", "|---|---|---|",
        *[f"| gen-{k} | {mean_std([r['summary']['generations'][k]['train']['acc'] for r in runs])} | "
          f"{mean_std([r['summary']['generations'][k]['test']['acc'] for r in runs])} |"
          for k in range(len(runs[0]["summary"]["generations"]))],
        *[f"| ensemble 0..{e['members'][-1]} | | "
          f"{mean_std([r['summary']['ensembles'][i]['test']['acc'] for r in runs])} |"
          for i, e in enumerate(runs[0]["summary"]["ensembles"])]])


# ---------------------------------------------------------------------------------------------------- dark knowledge

DK = "docs/data/dark-knowledge.json"


def _accs(summary: dict[str, Any]) -> str:
    return " / ".join(f"{100 * g['test']['acc']:.1f}" for g in summary["generations"])


def _gen_stats(c: dict[str, Any], key: str, fmt: str) -> str:
    return " → ".join(format(g[key], fmt) if g.get(key) is not None else "—" for g in c["drift"]["generations"])


def _trend(values: list[float]) -> str:
    if all(b > a for a, b in zip(values, values[1:], strict=False)):
        return "grows"
    if all(b < a for a, b in zip(values, values[1:], strict=False)):
        return "shrinks"
    return "goes"


def _strongest(c: dict[str, Any]) -> tuple[str, str, float, float]:
    """The class whose doubt is most concentrated, its top neighbour, and both directions of the similarity."""
    sim = c["similarity_gen0"]
    names, m = sim["classes"], sim["matrix"]
    a = max(range(len(names)), key=lambda i: max(m[i]))
    b = max(range(len(names)), key=lambda j: m[a][j])
    return names[a], names[b], m[a][b], m[b][a]


@section("dk-runs", "docs/dark-knowledge.md", DK, "benchmarks/dark_knowledge.py")
def dk_runs(d: dict[str, Any]) -> str:
    full, low = d["cases"]["digits"], d["cases"]["digits-undertrained"]
    n = len(full["summary"]["generations"]) - 1
    suspects = full["drift"]["generations"][0]["suspects"]
    return (f"The pictures below are real outputs, made by `python benchmarks/dark_knowledge.py` "
            f"({stamp(d['provenance'])}). The similarity heatmap, the dendrogram and the reliability diagram come from "
            f"the full digits recipe, `{full['command']}` ({full['summary']['generations'][0]['epochs']} epochs, "
            f"generations 0–{n}, test accuracy {_accs(full['summary'])} %), inspected with `{full['inspect']}` "
            f"(defaults, so `T = 1`). The suspect grid comes from a deliberately under-trained run, `{low['command']}` "
            f"(test accuracy {_accs(low['summary'])} %), inspected with `{low['inspect']}`: the fully trained "
            f"teacher has {suspects} suspect{'s' if suspects != 1 else ''} at the default threshold.")


@section("dk-asymmetry", "docs/dark-knowledge.md", DK, "benchmarks/dark_knowledge.py")
def dk_asymmetry(d: dict[str, Any]) -> str:
    a, b, ab, ba = _strongest(d["cases"]["digits"])
    return (f"the {a}s of the digits teacher send {100 * ab:.0f} % of their non-target mass to {b}, while the {b}s "
            f"send {100 * ba:.0f} % to {a}.")


@section("dk-pairs", "docs/dark-knowledge.md", DK, "benchmarks/dark_knowledge.py")
def dk_pairs(d: dict[str, Any]) -> str:
    pairs = d["cases"]["digits"]["neighbours"]["0"]["pairs"][:4]
    return "The digits teacher's four most similar pairs: " + ", ".join(
        f"{p['classes'][0]}–{p['classes'][1]} ({p['similarity']:.3f})" for p in pairs) + "."


@section("dk-neighbours", "docs/dark-knowledge.md", DK, "benchmarks/dark_knowledge.py")
def dk_neighbours(d: dict[str, Any]) -> str:
    c = d["cases"]["digits"]
    a, _, _, _ = _strongest(c)
    near = c["neighbours"]["0"]["neighbours"][a]
    pairs = c["neighbours"]["0"]["pairs"][:3]
    return (f"`{a} → " + ", ".join(f"{n['class']} ({n['mass']:.3f})" for n in near) + "`; pairs "
            + ", ".join(f"{p['classes'][0]}–{p['classes'][1]} {p['similarity']:.3f}" for p in pairs) + ".")


@section("dk-entropy", "docs/dark-knowledge.md", DK, "benchmarks/dark_knowledge.py")
def dk_entropy(d: dict[str, Any]) -> str:
    c = d["cases"]["digits"]
    values = [g["mean_entropy"] for g in c["drift"]["generations"]]
    return (f"  In the digits run it {_trend(values)} {_gen_stats(c, 'mean_entropy', '.3f')} nats over generations "
            f"0–{len(values) - 1}.")


@section("dk-fashion", "docs/dark-knowledge.md", DK, "benchmarks/dark_knowledge.py")
def dk_fashion(d: dict[str, Any]) -> str:
    c = d["cases"]["fashion-mnist"]
    gens = c["drift"]["generations"]
    near = c["neighbours"]["0"]["neighbours"]
    top = sorted(near, key=lambda k: -near[k][0]["mass"])[:3]
    drift = [x["mean"] for x in c["drift"]["drift"]]
    lines = [
        f"The pictures below come from `{c['inspect']}` on the [Fashion-MNIST recipe](recipes.md)'s seed-0 run of the "
        f"results script (`{c['command']}`; test accuracy {_accs(c['summary'])} % for generations "
        f"0–{len(gens) - 1}), made by `python benchmarks/dark_knowledge.py` ({stamp(d['provenance'])}).", "",
        "The generation-0 teacher's most concentrated doubts: " + "; ".join(
            f"{k} sends {100 * near[k][0]['mass']:.0f}% of its non-target mass to {near[k][0]['class']}" for k in top)
        + ". Its most similar pairs: " + ", ".join(
            f"{p['classes'][0]}–{p['classes'][1]} ({p['similarity']:.3f})" for p in c["neighbours"]["0"]["pairs"][:4])
        + ".", "",
        "![Similarity heatmap, Fashion-MNIST gen-0](img/inspect-fmnist-gen0-similarity_heatmap.png)", "",
        "![Dendrogram, Fashion-MNIST gen-0](img/inspect-fmnist-gen0-dendrogram.png)", ""]
    if gens[0].get("taxonomy_score") is not None:
        lines += [f"**Taxonomy score** with the built-in grouping (tops / footwear / other), generations 0–"
                  f"{len(gens) - 1}: {_gen_stats(c, 'taxonomy_score', '.3f')}, against "
                  f"{gens[0]['taxonomy_chance']:.3f} by chance.", ""]
    lines += [f"**Suspects** (training images where the teacher says another class with p ≥ 0.9), generations "
              f"0–{len(gens) - 1}: {_gen_stats(c, 'suspects', 'd')}.", ""]
    if gens[0]["suspects"]:
        lines += ["![Suspects, Fashion-MNIST gen-0](img/inspect-fmnist-gen0-suspects.png)", ""]
    lines += [f"**Across generations**: mean soft-label entropy {_gen_stats(c, 'mean_entropy', '.3f')} nats; mean JS "
              "drift of the class structure " + " then ".join(f"{x:.4f}" for x in drift if x is not None)
              + f"; test ECE {_gen_stats(c, 'ece', '.3f')}.", "",
              "![Reliability diagram, Fashion-MNIST gen-0](img/inspect-fmnist-gen0-reliability.png)", "",
              "![Reliability diagram, Fashion-MNIST gen-2](img/inspect-fmnist-gen2-reliability.png)"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- datasets

@section("datasets-speed", "docs/datasets.md", "docs/data/data-pipeline.json", "benchmarks/data_pipeline.py")
def datasets_speed(d: dict[str, Any]) -> str:
    out = [f"Measured by `python benchmarks/data_pipeline.py` ({stamp(d['provenance'])}): the CIFAR-10 JPEG copy "
           f"(50,000 images), batch {d['batch_size']}, crop + flip, {d['rounds']} interleaved rounds of "
           f"{d['batches']} batches per pipeline, torch threads {d['torch_threads']}, {d['workers']} DataLoader "
           "workers for the torchvision path; epoch times extrapolated from the seconds per batch.", "",
           "| model | fast path epoch s (min … max) | torchvision path epoch s (min … max) | torchvision / fast, per "
           "round (min … max) | fast path setup s |", "|---|---|---|---|---|"]
    for r in d["results"]:
        mem, tv = (sorted(x * r["epoch_batches"] for x in r["seconds_per_batch"][k]) for k in ("memory", "torchvision"))
        ratios = sorted(r["ratio_per_round"])
        out.append(f"| {r['model']} | {mem[len(mem) // 2]:.1f} ({mem[0]:.1f} … {mem[-1]:.1f}) | "
                   f"{tv[len(tv) // 2]:.1f} ({tv[0]:.1f} … {tv[-1]:.1f}) | {ratios[len(ratios) // 2]:.1f}x "
                   f"({ratios[0]:.1f} … {ratios[-1]:.1f}) | {r['setup_seconds']['memory']:.1f} |")
    return "\n".join(out + ["", "Medians first. `trivial` is global average pooling and a linear layer (the loader "
                             "dominates); `convnet` a 0.1 M-parameter CNN (the model dominates)."])


@section("dk-speed", "docs/dark-knowledge.md", "docs/data/inspect-speed.json", "benchmarks/inspect_speed.py")
def dk_speed(d: dict[str, Any]) -> str:
    wall, cpu, imp = sorted(d["wall_seconds"]), sorted(d["cpu_seconds"]), sorted(d["import_cpu_seconds"])
    return (f"Measured by `python benchmarks/inspect_speed.py --write` ({stamp(d['provenance'])}), "
            f"{len(wall)} runs of the whole command on {d['train']:,} × {d['classes']} caches, {d['generations']} "
            f"generations: wall {wall[0]:.1f} s best, {wall[len(wall) // 2]:.1f} s median, {wall[-1]:.1f} s worst; "
            f"CPU time of all its processes {cpu[0]:.1f}–{cpu[-1]:.1f} s, of which importing `distill.cli` and the "
            f"analysis module alone takes {imp[0]:.1f}–{imp[-1]:.1f} s of CPU. The rest is cache verification, "
            "analysis, tables, the PNGs and the CSV/JSON files; `--jobs` spreads the figures over the cores.")
