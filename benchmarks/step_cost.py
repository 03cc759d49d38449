"""What a student's training step costs when its teacher is served from the cache: cross-entropy alone beside every
logit loss and every embedding loss (docs/methods.md, "Cost of a step").

A ``cifar_resnet20`` student, batches of 32x32 images; the teacher is a soft-label cache of ``--samples`` samples
(logits and 64-d float16 embeddings, the width of ``cifar_resnet56``'s), written by the engine's cache writer from
synthetic teacher outputs and read by its cached teacher. A step is what the training step does: the student's
forward pass with its feature tap, the cache lookup by index (logits, the embedding, CRD's negatives), the loss,
backward and an SGD step. Steps of every method are timed in turn (round robin, so a change of machine load hits all
alike); the medians and their ratio to cross-entropy go to ``docs/data/step-cost.json``.

Usage: ``python -m benchmarks.step_cost [--steps 30] [--batch 128] [--write]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.cache_scale import build, fingerprint
from benchmarks.machine import load_average, provenance
from benchmarks.pages import publish
from distill.cache import SoftLabelCache
from distill.losses import Progress, build_loss
from distill.models import create_backbone
from distill.outputs import FeatureTap
from distill.teachers import CachedTeacher

DATA = "docs/data/step-cost.json"
# (row name, kd.variant, build_loss keywords): cross-entropy first (the reference), then the cached methods.
METHODS: list[tuple[str, str, dict[str, Any]]] = [
    ("student alone (CE)", "", {}),
    ("KD", "standard", {"alpha": 0.9, "temperature": 4.0}),
    ("DKD", "dkd", {"temperature": 4.0}),
    ("DIST", "dist", {"temperature": 4.0}),
    ("RKD", "rkd", {}),
    ("PKT", "pkt", {}),
    ("SP", "sp", {}),
    ("CRD", "crd", {}),
]


class Method:
    """One method's student, loss, teacher source and optimizer, stepped like the training step steps them."""

    def __init__(self, variant: str, kwargs: dict[str, Any], cache: SoftLabelCache, sample: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.student = create_backbone("cifar_resnet20", cache.num_classes, 3)
        self.loss = build_loss(1 if variant else 0, variant or "standard", **kwargs)
        student_names, teacher_names = self.loss.feature_names()
        self.tap = FeatureTap(self.student, student_names)
        self.teacher = CachedTeacher([cache], features=teacher_names) if self.loss.needs_teacher else None
        if self.loss.has_parameters:
            with torch.no_grad():
                self.loss.bind(self.tap(sample), self.teacher(sample, torch.zeros(1, dtype=torch.long)))
        self.opt = torch.optim.SGD([*self.student.parameters(), *self.loss.parameters()], lr=0.01, momentum=0.9)

    def step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> float:
        start = time.perf_counter()
        out = self.tap(x)
        teacher = self.teacher(x, index) if self.teacher is not None else None
        total = self.loss(out, y, teacher, Progress(epoch=100)).total
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="store docs/data/step-cost.json and render the page")
    args = parser.parse_args()
    stamp = provenance()
    classes, dim = 10, 64
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "cache"
        build(directory, args.samples, classes, "full", 1, dim)
        cache = SoftLabelCache(directory, fingerprint(args.samples, classes), None)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, 3, 32, 32, generator=g)
        y = torch.randint(0, classes, (args.batch,), generator=g)
        methods = [(name, Method(variant, kwargs, cache, x[:1])) for name, variant, kwargs in METHODS]
        times: dict[str, list[float]] = {name: [] for name, _ in methods}
        for step in range(args.warmup + args.steps):
            index = torch.randint(0, args.samples, (args.batch,), generator=g)
            for name, method in methods:
                seconds = method.step(x, y, index)
                if step >= args.warmup:
                    times[name].append(seconds)
    ce = statistics.median(times[METHODS[0][0]])
    rows = [{"method": name, "variant": variant or "cross_entropy", "median_seconds": statistics.median(times[name]),
             "ratio_to_ce": statistics.median(times[name]) / ce, "seconds": times[name]}
            for name, variant, _ in METHODS]
    result = {"provenance": {**stamp, "load_average_at_end": load_average()},
              "setting": {"student": "cifar_resnet20", "batch": args.batch, "samples": args.samples,
                          "classes": classes, "embedding_dim": dim, "steps": args.steps, "warmup": args.warmup},
              "rows": rows}
    for r in rows:
        print(f"{r['method']}: {r['median_seconds'] * 1e3:.1f} ms, {r['ratio_to_ce']:.2f} x CE")
    if args.write:
        print("rendered:", ", ".join(publish(DATA, result)))


if __name__ == "__main__":
    main()
