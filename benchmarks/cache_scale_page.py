"""Renderer of docs/cache-scale.md from ``docs/data/cache-scale.json``, which ``python -m benchmarks.cache_scale
--write`` writes: the soft-label cache at ImageNet-1k size -- bytes, build throughput, random-batch reads against the
memory-copy limit, resident memory, growth with samples, classes and views, and what a GPU consumes."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp

GOAL = 0.5  # a batch read at least half as fast as copying the same bytes in memory


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def _row(r: dict[str, Any], batch: int) -> list[str]:
    rd, b = r["read"], r["build"]
    views = r["views"] * r["samples"]
    per_sample = rd["array_bytes"] / r["samples"] + rd.get("embedding_array_bytes", 0) / r["samples"]
    served = batch / rd["lookup_seconds"]
    return [r["name"], f"{per_sample:,.0f}", f"{rd['bytes_per_view']:,}", _mb(rd["array_bytes"]),
            f"{views / b['seconds']:,.0f}", f"{rd['open_seconds']:.1f}", _us(rd["lookup_seconds"]),
            _us(rd["gather_seconds"]), _us(rd["copy_seconds"]), f"{rd['copy_seconds'] / rd['lookup_seconds']:.2f}",
            f"{rd['copy_seconds'] / rd['gather_seconds']:.2f}", f"{served:,.0f}"]


def scale(d: dict[str, Any]) -> str:
    """The whole measured section: setting, main table, embeddings, memory, growth and the GPU comparison."""
    p, s, ref = d["provenance"], d["setting"], d["gpu_reference"]
    batch = s["batch"]
    lines = [f"Measured by `python -m benchmarks.cache_scale --write` ({stamp(p)}; load average at the end "
             f"{', '.join(map(str, p['load_average_at_end']))}; caches in `{p['directory']}`). Synthetic teacher "
             f"outputs for {s['samples']:,} samples × {s['classes']:,} classes, written by the engine's cache writer "
             f"and read by its reader; a read is a batch of {batch} random indices, median of {s['repeats']} "
             "(each cache is read right after its build, so its pages are normally still in the page cache: these are "
             "reads from memory; reads from a cold disk are not measured here).", "",
             "| cache | bytes / sample | bytes / view | array | build views / s | open (verify) s | batch read µs "
             "(float32 logits) | raw gather µs | memory copy µs (limit) | read ÷ limit | gather ÷ limit "
             "| samples / s served |", "|" + "---|" * 12]
    lines += ["| " + " | ".join(_row(r, batch)) + " |" for r in d["rows"]]
    emb = [r for r in d["rows"] if r["embedding_dim"]]
    for r in emb:
        rd = r["read"]
        lines += ["", f"Embeddings ({r['embedding_dim']}-d float16, `cache.embeddings`): "
                  f"{rd['embedding_bytes_per_view']:,} bytes a view, {_mb(rd['embedding_array_bytes'])} for the "
                  f"training set; a batch of {batch} embeddings is read in {_us(rd['embedding_seconds'])} µs against "
                  f"{_us(rd['embedding_copy_seconds'])} µs to copy the same bytes "
                  f"({rd['embedding_copy_seconds'] / rd['embedding_seconds']:.2f} of the limit)."]
    met = [r["name"] for r in d["rows"] if r["read"]["copy_seconds"] / r["read"]["lookup_seconds"] >= GOAL]
    missed = [r["name"] for r in d["rows"] if r["name"] not in met]
    lines += ["", f"Goal, a batch read at least {GOAL} × the memory-copy limit: met by "
              f"{', '.join(met) or 'none'}; not met by {', '.join(missed) or 'none'}. The copy moves the stored "
              "bytes once; a read gathers rows at random indices and decodes them to float32 logits (the top-k "
              "format rebuilds all classes' log-probabilities), so its bytes out exceed its bytes in."]
    lines += ["", "| cache | resident before: total / own (anonymous) / mapped file MB | after the reads | array |",
              "|---|---|---|---|"]
    for r in d["rows"]:
        b, a = r["read"]["memory_before_mb"], r["read"]["memory_after_mb"]
        lines.append(f"| {r['name']} | {b['VmRSS']:,.0f} / {b['RssAnon']:,.0f} / {b['RssFile']:,.0f} | "
                     f"{a['VmRSS']:,.0f} / {a['RssAnon']:,.0f} / {a['RssFile']:,.0f} | "
                     f"{_mb(r['read']['array_bytes'] + r['read'].get('embedding_array_bytes', 0))} |")
    lines += ["", "The process's own (anonymous) memory does not grow with the reads; the memory map adds only the "
              "pages it touched (file-backed, shared with the page cache, dropped under memory pressure).", "",
              "| grows with | sizes | bytes per unit | build seconds per unit | batch read µs per unit |",
              "|---|---|---|---|---|"]
    for g in d["scaling"]:
        lines.append(f"| {g['along']} | {', '.join(f'{x:,}' for x in g['sizes'])} | {g['bytes_per_unit']:,.1f} | "
                     f"{g['build_seconds_per_unit']:.3g} | {g['lookup_seconds_per_unit'] * 1e6:.3g} |")
    gpu_rate = ref["samples"] / ref["seconds_per_epoch"]
    served = {r["name"]: batch / r["read"]["lookup_seconds"] for r in d["rows"]}
    slowest = min(served, key=served.get)
    lines += ["", f"What a GPU consumes: {ref['what']}: {ref['samples']:,} samples in {ref['seconds_per_epoch']} s, "
              f"{gpu_rate:,.0f} samples/s for {ref['gpus']} GPUs ({gpu_rate / ref['gpus']:,.0f} per GPU). The "
              f"slowest cache here, {slowest}, serves {served[slowest]:,.0f} samples/s from one process and one "
              f"thread, {served[slowest] / gpu_rate:,.1f} × what those {ref['gpus']} GPUs consume."]
    return "\n".join(lines) + "\n"
