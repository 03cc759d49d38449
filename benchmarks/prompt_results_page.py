"""Renderer of docs/prompts.md's results section from ``docs/data/prompt-results.json``, which
``python -m benchmarks.prompt_results`` writes as each run finishes."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import pct, table

RIGHT = ["---", "---:", "---:", "---:", "---:"]


def results(r: dict[str, Any]) -> str:
    """The source bases, the target adaptations, shallow vs deep at two sizes, and the length search."""
    def acc(x: float) -> str:
        return pct(x, 1)
    s = r["settings"]
    shape = {x["size"]: (x["embed_dim"], x["depth"]) for x in r["sizes"]}
    lines = [f"Measured {r['date']} on {r['machine']}, commit `{r['commit']}`, load average {r['load_start']} at the "
             f"start and {r['load_end']} at the end; {r['wall_seconds']:.0f} s for the whole script. Source task: "
             f"CIFAR-10 classes {', '.join(r['source_classes'])} ({s['source_per_class']} train images a class, "
             f"{s['source_epochs']} epochs); target: {', '.join(r['target_classes'])} ({s['train_per_class']} train "
             f"images a class, 20% of them held out for validation, 100 test images a class, {s['epochs']} epochs, "
             "AdamW, seed 0). One seed: differences of a point or two are noise.", "",
             *table(["source base", "test acc %", "parameters", "s/epoch"],
                    [[f"{size} ViT {shape[size][0]}x{shape[size][1]}", acc(x["test_acc"]), f"{x['total']:,}",
                      x["s_per_epoch"]] for size, x in r["source"].items()], RIGHT[:4]), "",
             *table(["target adaptation (base ViT)", "test acc %", "trainable / total params", "checkpoint bytes",
                     "s/epoch"], [[x["name"], acc(x["test_acc"]), f"{x['trainable']:,} / {x['total']:,}",
                                   f"{x['ckpt_bytes']:,}", x["s_per_epoch"]] for x in r["rows"]], RIGHT), "",
             f"A full copy of the network's weights is {r['full_model_bytes']:,} bytes (`torch.save` of its state "
             "dict); a prompted checkpoint also holds Lightning's optimizer state of the trained tensors.", "",
             *table(["model", "prompt", "test acc %", "trainable params"],
                    [[f"{x['size']} (width {x['embed_dim']}, depth {x['depth']})", f"{x['name']} (8)",
                      acc(x["test_acc"]), f"{x['trainable']:,}"] for x in r["sizes"]], ["---", "---", "---:", "---:"]),
             "", "Length search (`distill sweep --order ascending --patience 2`, deep prompts, validation accuracy):",
             "",
             *table(["length", "val acc %", "test acc %", "train s"],
                    [[x["value"], acc(x["objective"]), acc(x["test_acc"]), f"{float(x['train_seconds']):.0f}"]
                     for x in r["length"]], ["---:"] * 4)]
    return "\n".join(lines)
