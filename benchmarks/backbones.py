"""Measure the small backbones on Fashion-MNIST and render the table of docs/backbones.md.

    python -m benchmarks.backbones                    # every model of MODELS, 20 epochs on 2,000 images
    python -m benchmarks.backbones --train 4000 --epochs 20 --only small_resnet8

Each model is trained from scratch by a real ``distill run recipes/fashion-mnist-ban.yaml --generations 0`` (no
augmentation, so training accuracy measures fitting) into ``runs/backbones/<name>``; finished runs are reused.
Parameters are counted on the built model; images/s = training images seen / training seconds of the run. Writes
``docs/data/backbones.json`` (with machine, date and commit) and renders the sections
(``benchmarks/backbones_page.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import timm

import distill  # noqa: F401  (registers the families into timm)
from benchmarks import ROOT
from benchmarks.machine import provenance
from benchmarks.pages import publish

RECIPE = "recipes/fashion-mnist-ban.yaml"
# name -> init_args. stem_stride 2 starts 28x28 inputs at 14x14 (the recipes' setting for Fashion-MNIST).
MODELS: dict[str, dict] = {
    "small_cnn": {},
    "small_resnet8": {"stem_stride": 2},
    "small_resnet8_w32": {"stem_stride": 2},
    "small_resnet14_w32": {"stem_stride": 2},
}
# The literature families: (models, classes they are counted at, published counts, source). Counted, not trained.
FAMILIES: list[tuple[list[str], int, str, str]] = [
    (["cifar_resnet20", "cifar_resnet32", "cifar_resnet56", "cifar_resnet110"], 10, "0.27M / 0.46M / 0.85M / 1.7M",
     "He et al. 2016"),
    (["cifar_resnet8x4", "cifar_resnet32x4"], 100, "1.2M / 7.4M", "CRD benchmark (Tian et al. 2020)"),
    (["cifar_wrn_16_2", "cifar_wrn_28_2", "cifar_wrn_40_2", "cifar_wrn_28_10"], 10, "0.69M / 1.47M / 2.2M / 36.5M",
     "Zagoruyko & Komodakis 2016"),
    (["cifar_densenet_bc_100_12"], 100, "0.8M", "Huang et al. 2017, as used by Born-Again Networks"),
    (["cifar_densenet_bc_250_24"], 10, "15.3M", "Huang et al. 2017, as used by Born-Again Networks"),
]


def count(name: str, num_classes: int, in_chans: int = 3, **init_args) -> int:
    model = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, **init_args)
    return sum(p.numel() for p in model.parameters())


def measure(name: str, init_args: dict, train: int, epochs: int) -> dict:
    out = ROOT / "runs" / "backbones" / f"{name}-n{train}-e{epochs}"
    if not (out / "summary.json").is_file():
        args = [sys.executable, "-m", "distill.cli", "run", RECIPE, "--generations", "0", "--backbone.name", name,
                "--backbone.init_args", json.dumps(init_args), "--data.train_subset", str(train),
                "--data.crop_padding", "0", "--data.hflip", "false", "--trainer.max_epochs", str(epochs),
                "--trainer.enable_progress_bar", "false"]
        args += ["--out", str(out), "--resume"] if (out / "config.yaml").is_file() else ["--out", str(out)]
        subprocess.run(args, cwd=ROOT, check=True)
    g = json.loads((out / "summary.json").read_text())["generations"][0]
    return {"name": name, "init_args": init_args, "parameters": count(name, 10, 1, **init_args),
            "train_acc": g["train"]["acc"], "test_acc": g["test"]["acc"],
            "images_per_second": train * epochs / g["train_seconds"], "epoch_seconds": g["train_seconds"] / epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="training images (a fixed random subset; the "
                        "Fashion-MNIST recipe's)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--only", nargs="*", choices=sorted(MODELS), default=list(MODELS))
    args = parser.parse_args()
    prov = provenance()
    rows = [measure(name, MODELS[name], args.train, args.epochs) for name in args.only]
    data = {"provenance": prov, "recipe": RECIPE, "dataset": "Fashion-MNIST", "train_images": args.train,
            "test_images": 10000, "epochs": args.epochs, "augmentation": "no augmentation", "rows": rows,
            "families": [{"models": models, "num_classes": classes, "parameters": [count(m, classes) for m in models],
                          "published": published, "source": source}
                         for models, classes, published, source in FAMILIES]}
    print("rendered:", ", ".join(publish("docs/data/backbones.json", data)))


if __name__ == "__main__":
    main()
