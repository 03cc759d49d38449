"""Renderers of docs/dark-knowledge.md's measured sections from ``docs/data/dark-knowledge.json``, which
``python -m benchmarks.dark_knowledge`` writes: which class sends its doubt where, and how that changes over
generations. Words like "grows" and the strongest class are decided here from the data."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp


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


def _pairs(pairs: list[dict[str, Any]], fmt: str) -> str:
    return ", ".join(fmt.format(a=p["classes"][0], b=p["classes"][1], s=p["similarity"]) for p in pairs)


def runs(d: dict[str, Any]) -> str:
    """Which runs the pictures come from, with their accuracies, and the trained teacher's suspect count."""
    full, low = d["cases"]["digits"], d["cases"]["digits-undertrained"]
    n = len(full["summary"]["generations"]) - 1
    suspects = full["drift"]["generations"][0]["suspects"]
    return (f"The pictures below are real outputs, made by `python -m benchmarks.dark_knowledge` "
            f"({stamp(d['provenance'])}). The similarity heatmap, the dendrogram and the reliability diagram come from "
            f"the full digits recipe, `{full['command']}` ({full['summary']['generations'][0]['epochs']} epochs, "
            f"generations 0–{n}, test accuracy {_accs(full['summary'])} %), inspected with `{full['inspect']}` "
            f"(defaults, so `T = 1`). The suspect grid comes from a deliberately under-trained run, `{low['command']}` "
            f"(test accuracy {_accs(low['summary'])} %), inspected with `{low['inspect']}`: the fully trained "
            f"teacher has {suspects} suspect{'s' if suspects != 1 else ''} at the default threshold.")


def asymmetry(d: dict[str, Any]) -> str:
    """Both directions of the strongest similarity: S is not symmetric."""
    a, b, ab, ba = _strongest(d["cases"]["digits"])
    return (f"the {a}s of the digits teacher send {100 * ab:.0f} % of their non-target mass to {b}, while the {b}s "
            f"send {100 * ba:.0f} % to {a}.")


def pairs(d: dict[str, Any]) -> str:
    """The digits teacher's four most similar pairs."""
    top = d["cases"]["digits"]["neighbours"]["0"]["pairs"][:4]
    return "The digits teacher's four most similar pairs: " + _pairs(top, "{a}–{b} ({s:.3f})") + "."


def neighbours(d: dict[str, Any]) -> str:
    """The strongest class's neighbours and the top three pairs, as the inspection prints them."""
    c = d["cases"]["digits"]
    a, _, _, _ = _strongest(c)
    near = c["neighbours"]["0"]["neighbours"][a]
    return (f"`{a} → " + ", ".join(f"{n['class']} ({n['mass']:.3f})" for n in near) + "`; pairs "
            + _pairs(c["neighbours"]["0"]["pairs"][:3], "{a}–{b} {s:.3f}") + ".")


def entropy(d: dict[str, Any]) -> str:
    """How the digits run's soft-label entropy moves over generations."""
    c = d["cases"]["digits"]
    values = [g["mean_entropy"] for g in c["drift"]["generations"]]
    return (f"  In the digits run it {_trend(values)} {_gen_stats(c, 'mean_entropy', '.3f')} nats over generations "
            f"0–{len(values) - 1}.")


def fashion(d: dict[str, Any]) -> str:
    """The Fashion-MNIST run's inspection: doubts, pairs, taxonomy score, suspects, drift and calibration."""
    c = d["cases"]["fashion-mnist"]
    gens = c["drift"]["generations"]
    near = c["neighbours"]["0"]["neighbours"]
    top = sorted(near, key=lambda k: -near[k][0]["mass"])[:3]
    drift = [x["mean"] for x in c["drift"]["drift"]]
    last = len(gens) - 1
    lines = [
        f"The pictures below come from `{c['inspect']}` on the [Fashion-MNIST recipe](recipes.md)'s seed-0 run of the "
        f"results script (`{c['command']}`; test accuracy {_accs(c['summary'])} % for generations "
        f"0–{last}), made by `python -m benchmarks.dark_knowledge` ({stamp(d['provenance'])}).", "",
        "The generation-0 teacher's most concentrated doubts: " + "; ".join(
            f"{k} sends {100 * near[k][0]['mass']:.0f}% of its non-target mass to {near[k][0]['class']}" for k in top)
        + ". Its most similar pairs: " + _pairs(c["neighbours"]["0"]["pairs"][:4], "{a}–{b} ({s:.3f})") + ".", "",
        "![Similarity heatmap, Fashion-MNIST gen-0](img/inspect-fmnist-gen0-similarity_heatmap.png)", "",
        "![Dendrogram, Fashion-MNIST gen-0](img/inspect-fmnist-gen0-dendrogram.png)", ""]
    if gens[0].get("taxonomy_score") is not None:
        lines += [f"**Taxonomy score** with the built-in grouping (tops / footwear / other), generations 0–{last}: "
                  f"{_gen_stats(c, 'taxonomy_score', '.3f')}, against {gens[0]['taxonomy_chance']:.3f} by chance.", ""]
    lines += [f"**Suspects** (training images where the teacher says another class with p ≥ 0.9), generations "
              f"0–{last}: {_gen_stats(c, 'suspects', 'd')}.", ""]
    if gens[0]["suspects"]:
        lines += ["![Suspects, Fashion-MNIST gen-0](img/inspect-fmnist-gen0-suspects.png)", ""]
    lines += [f"**Across generations**: mean soft-label entropy {_gen_stats(c, 'mean_entropy', '.3f')} nats; mean JS "
              "drift of the class structure " + " then ".join(f"{x:.4f}" for x in drift if x is not None)
              + f"; test ECE {_gen_stats(c, 'ece', '.3f')}.", "",
              "![Reliability diagram, Fashion-MNIST gen-0](img/inspect-fmnist-gen0-reliability.png)", "",
              "![Reliability diagram, Fashion-MNIST gen-2](img/inspect-fmnist-gen2-reliability.png)"]
    return "\n".join(lines)
