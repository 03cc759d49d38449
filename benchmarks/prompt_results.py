"""Prompt-tuned students on CPU: pretrain a small ViT on CIFAR-10 classes 0-4, adapt it to classes 5-9.

``python -m benchmarks.prompt_results [--work DIR] [--train-per-class N] [--epochs E]`` writes
``docs/data/prompt-results.json`` as each run finishes and renders the results section of docs/prompts.md from it at
the end (``benchmarks/prompt_results_page.py``). Every number comes from a ``distill run`` made here.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import timm
import torch

from benchmarks import ROOT
from benchmarks.pages import publish
from distill.cli import main
from distill.data.locate import ensure_cifar10_jpeg
from distill.io import atomic_write_json

DATA = "docs/data/prompt-results.json"
SIZES = {"base": {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 4, "num_heads": 3},
         "small": {"img_size": 32, "patch_size": 4, "embed_dim": 48, "depth": 2, "num_heads": 2}}
VIT = "vit_tiny_patch16_224"


def subset_folder(src: Path, dest: Path, classes: list[str], train: int, test: int) -> Path:
    """Symlinks to the first ``train``/``test`` images of each class (an image folder of a class subset)."""
    for split, n in (("train", train), ("test", test)):
        for c in classes:
            d = dest / split / c
            d.mkdir(parents=True, exist_ok=True)
            for f in sorted((src / split / c).iterdir())[:n]:
                if not (d / f.name).exists():
                    (d / f.name).symlink_to(f)
    return dest


def common(root: Path, epochs: int, lr: float, val: float = 0.0) -> list[str]:
    data = {"name": "imagefolder", "root": str(root), "batch_size": 64, "val_fraction": val, "seed": 0}
    return ["--data", json.dumps(data), "--trainer.max_epochs", str(epochs), "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--optimizer.name", "adamw", "--optimizer.lr", str(lr),
            "--optimizer.weight_decay", "0.0", "--seed", "0"]


def prompted(size: str, source: Path, prompt: dict, **extra) -> str:
    args = {"base": VIT, "base_args": SIZES[size], "source": {"checkpoint": str(source)}, "prompt": prompt, **extra}
    return json.dumps({"name": "prompted_vit", "init_args": args})


def run(out: Path, args: list[str]) -> dict:
    if not (out / "summary.json").is_file():
        code = main(["run", "--out", str(out), *args])
        if code:
            raise SystemExit(f"distill run {out} exited {code}")
    return json.loads((out / "summary.json").read_text())


def row(name: str, out: Path, summary: dict, k: int = -1) -> dict:
    g = summary["generations"][k]
    ckpt = out / f"gen-{g['generation']}" / "model.ckpt"
    return {"name": name, "test_acc": g["test"]["acc"], "trainable": g["parameters"]["trainable"],
            "total": g["parameters"]["total"], "ckpt_bytes": ckpt.stat().st_size,
            "s_per_epoch": round(g["train_seconds"] / max(1, g["epochs"]), 2), "teacher": g["teacher"]}


def full_model_bytes(size: str) -> int:
    """Bytes of a full checkpointed copy of the network (the base ViT's state dict plus a 5-class head)."""
    buf = io.BytesIO()
    torch.save(timm.create_model(VIT, num_classes=5, **SIZES[size]).state_dict(), buf)
    return buf.tell()


def main_results() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/prompt-results")
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--source-per-class", type=int, default=600)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--source-epochs", type=int, default=10)
    a = p.parse_args()
    work = Path(a.work)
    cifar = ensure_cifar10_jpeg()
    classes = sorted(d.name for d in (cifar / "train").iterdir())
    src = subset_folder(cifar, work / "data-src", classes[:5], a.source_per_class, 100)
    tgt = subset_folder(cifar, work / "data-tgt", classes[5:], a.train_per_class, 100)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    report = {"machine": f"{platform.machine()} {os.cpu_count()} CPU cores (shared), torch {torch.__version__}",
              "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit.strip(),
              "load_start": open("/proc/loadavg").read().split()[:3], "settings": vars(a),
              "source_classes": classes[:5], "target_classes": classes[5:], "rows": [], "sizes": [], "length": []}
    start = time.perf_counter()

    def save() -> None:
        report["wall_seconds"] = round(time.perf_counter() - start, 1)
        report["load_end"] = open("/proc/loadavg").read().split()[:3]
        atomic_write_json(ROOT / DATA, report, indent=1)  # the section is rendered once every part is there

    sources = {}
    for size in SIZES:  # pretrain the bases on the source task
        out = work / f"source-{size}"
        vit = json.dumps({"name": VIT, "init_args": SIZES[size]})
        s = run(out, [*common(src, a.source_epochs, 1e-3), "--generations", "0", "--backbone", vit])
        sources[size] = out / "gen-0" / "model.ckpt"
        report.setdefault("source", {})[size] = row(f"source {size}", out, s)
        save()
    base, tgt_args = sources["base"], common(tgt, a.epochs, 1e-2, val=0.2)
    prompted_args = [*tgt_args, "--generations", "0", "--task", "prompted"]
    variants = [("linear probe", {"kind": "none"}, {}), ("shallow (8)", {"kind": "shallow", "length": 8}, {}),
                ("deep (8)", {"kind": "deep", "length": 8}, {}),
                ("around (4+4)", {"kind": "around", "before": 4, "after": 4}, {}),
                ("input-dependent deep (8)", {"kind": "input_dependent", "length": 8, "deep": True}, {}),
                ("input map (affine) + deep (8)", {"kind": "input_map", "prompt": {"kind": "deep", "length": 8}}, {}),
                ("deep (8), k-means init", {"kind": "deep", "length": 8}, {"init": "kmeans"})]
    for name, prompt, extra in variants:
        out = work / ("t-" + name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", ""))
        report["rows"].append(row(name, out, run(out, [*prompted_args, "--backbone",
                                                         prompted("base", base, prompt, **extra)])))
        save()
    # full fine-tuning (gen 0), then a deep-prompted student taught by it through the cache (gen 1)
    out = work / "t-finetune-kd"
    ft = prompted("base", base, {"kind": "none"}, train_base=True)
    student = json.loads(prompted("base", base, {"kind": "deep", "length": 8}))
    s = run(out, [*tgt_args, "--generations", "1", "--task", "prompted", "--backbone", ft, "--optimizer.lr", "1e-3",
                  "--kd.variant", "standard", "--kd.temperature", "4", "--kd.alpha", "0.5", "--per_generation",
                  json.dumps([{"generation": 1, "backbone": student, "optimizer": {"lr": 1e-2}}])])
    report["rows"].append(row("full fine-tuning", out, s, 0))
    report["rows"].append(row("deep (8) taught by the fine-tuned model (KD, cache)", out, s, 1))
    report["full_model_bytes"] = full_model_bytes("base")
    save()
    for size in SIZES:  # shallow vs deep at two model sizes
        for kind in ("shallow", "deep"):
            out = work / f"size-{size}-{kind}"
            s = run(out, [*prompted_args, "--backbone", prompted(size, sources[size], {"kind": kind, "length": 8})])
            report["sizes"].append({"size": size, **SIZES[size], **row(kind, out, s)})
            save()
    sweep = work / "length-sweep"  # ascending length search with patience 2 on the validation split
    recipe = work / "length-sweep.yaml"
    recipe.write_text(json.dumps({"task": "prompted", "generations": 0,
                                  "backbone": json.loads(prompted("base", base, {"kind": "deep", "length": 1}))}))
    code = main(["sweep", str(recipe), "--key", "backbone.init_args.prompt.length", "--values", "1,2,4,8,16,32",
                 "--order", "ascending", "--patience", "2", "--out", str(sweep), *tgt_args])
    if code:
        raise SystemExit(f"distill sweep exited {code}")
    report["length"] = [{k: r[k] for k in ("value", "objective", "test_acc", "train_seconds")}
                        for r in csv.DictReader(open(sweep / "sweep.csv"))]
    (ROOT / "docs" / "img").mkdir(exist_ok=True)
    (ROOT / "docs" / "img" / "prompt-length-sweep.png").write_bytes((sweep / "sweep.png").read_bytes())
    save()
    print("rendered:", ", ".join(publish(DATA, report)))


if __name__ == "__main__":
    main_results()
