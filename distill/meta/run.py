"""One meta-learning run: episodes from the recipe's source, Lightning fit (resumable), meta-test, results.json.

Run directory: ``config.yaml`` (the resolved recipe), ``splits.json`` (the class split), ``checkpoints/last.ckpt``
(every epoch, for ``--resume``), ``logs/metrics.csv``, ``model.ckpt`` (the final state) and ``results.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from rich.console import Console
from torch.utils.data import DataLoader

from distill.callbacks import AtomicCheckpointIO, resumable_checkpoint
from distill.config import RecipeError, one_line
from distill.csv_log import ResumedCSVLogger
from distill.data.base import DataError
from distill.io import atomic_write_text
from distill.meta.baselines import BaselineConfig, pretrain, score_paradigms
from distill.meta.config import default_network
from distill.meta.episodes import ClassEpisodes, EpisodeDataset, EpochEpisodes, split_classes, write_splits
from distill.meta.measure import IterationTimer, MetaFaults, graph_bytes
from distill.meta.module import MetaModule, mean_ci95
from distill.meta.sinusoid import SinusoidTasks
from distill.meta.sources import LabelledImages, load_source


@dataclass
class Episodes:
    """The episode source of a run and what the network needs to know about it."""

    source: Any
    regression: bool
    num_outputs: int
    in_chans: int
    image_hw: tuple[int, int]
    splits: dict[str, list[int]]
    images: LabelledImages | None = None


def build_episodes(cfg: Namespace) -> Episodes:
    """Load the source of ``cfg.data`` and split its classes (raises DataError for bad data or split)."""
    e = cfg.episodes
    if cfg.data["name"] == "sinusoid":
        extra = sorted(set(cfg.data) - {"name"})
        if extra:
            raise DataError(f"data.{extra[0]}: the sinusoid source takes no options")
        return Episodes(SinusoidTasks(e.shot, e.query, cfg.seed), True, 1, 1, (1, 1),
                        {"train": [], "val": [], "test": []})
    images = load_source(cfg.data)
    splits = split_classes(len(images.class_names), cfg.split, cfg.seed, images.groups)
    source = ClassEpisodes(images.images, images.labels, splits, e.way, e.shot, e.query, cfg.seed)
    return Episodes(source, False, e.way, images.in_chans, images.image_hw, splits, images)


def _has(episodes: Episodes, split: str) -> bool:
    return episodes.regression or bool(episodes.splits.get(split))


class MetaRun:
    """Build, fit (or resume), test and record one meta recipe.

    Args:
        cfg: the parsed recipe.
        out: the run directory.
        console: where progress lines go.
    """

    def __init__(self, cfg: Namespace, out: str | Path, console: Console | None = None) -> None:
        self.cfg, self.out = cfg, Path(out)
        self.console = console or Console()
        self.episodes: Episodes | None = None

    def preflight(self) -> None:
        """Load the data, check the split and that the network runs on an episode (before the run directory is
        made).

        Raises:
            DataError: a split without classes.
            RecipeError: a network that cannot be built with its options or cannot take the episodes' inputs.
        """
        self.episodes = build_episodes(self.cfg)
        if not _has(self.episodes, "train") or not _has(self.episodes, "test"):
            raise DataError("split.train and split.test need classes (meta-training and meta-test episodes)")
        support = self.episodes.source.episode("train", 0)[0]
        network = self.network()
        try:
            with torch.no_grad():
                self.module().net(support)
        # a network's own checks on its options and inputs: user input, reported as one line naming it
        except (TypeError, ValueError, RuntimeError) as e:
            raise RecipeError(f"network {network} cannot run on {self.cfg.data['name']} episodes (inputs of shape "
                              f"{tuple(support.shape[1:])}): {type(e).__name__}: {one_line(e)}") from None

    def module(self) -> MetaModule:
        c, ep = self.cfg, self.episodes
        return MetaModule(network=self.network(), num_outputs=ep.num_outputs, in_chans=ep.in_chans,
                          image_hw=ep.image_hw, regression=ep.regression, method=c.method, inner_steps=c.inner.steps,
                          eval_inner_steps=c.inner.eval_steps, inner_lr=c.inner.lr, learn_inner_lr=c.inner.learn_lr,
                          first_order=c.inner.first_order, adapt=c.inner.adapt, meta_lr=c.meta_lr)

    def network(self) -> dict[str, Any]:
        """The recipe's network, or the default for its source."""
        return dict(self.cfg.network) if self.cfg.network is not None else default_network(self.cfg.data)

    def loader(self, split: str, n: int, batch: int, epochs: bool = False) -> DataLoader:
        ds = EpisodeDataset(self.episodes.source, split, n)
        return DataLoader(ds, batch_size=batch, sampler=EpochEpisodes(n) if epochs else None, shuffle=False)

    def run(self) -> dict[str, Any]:
        """Fit (resuming from ``checkpoints/last.ckpt`` when there), meta-test, write ``results.json``."""
        if self.episodes is None:
            self.preflight()
        c, e = self.cfg, self.cfg.episodes
        if not self.episodes.regression:
            write_splits(self.out / "splits.json", self.episodes.splits, self.episodes.images.class_names, c.seed)
        L.seed_everything(c.seed, workers=True, verbose=False)
        module = self.module()
        last = self.out / "checkpoints" / "last.ckpt"
        timer = IterationTimer()
        trainer_kwargs = dict(c.trainer.as_dict() if isinstance(c.trainer, Namespace) else c.trainer)
        trainer = L.Trainer(**trainer_kwargs, default_root_dir=self.out, inference_mode=False,
                            logger=ResumedCSVLogger(self.out, name="logs", version=""),
                            callbacks=[ModelCheckpoint(dirpath=last.parent, filename=last.stem, save_top_k=1,
                                                       every_n_epochs=1, enable_version_counter=False),
                                       timer, MetaFaults()],
                            plugins=[AtomicCheckpointIO()])
        val = self.loader("val", e.val_episodes, e.meta_batch) if e.val_episodes and _has(self.episodes, "val") \
            else None
        start = time.perf_counter()
        trainer.fit(module, train_dataloaders=self.loader("train", e.train_episodes, e.meta_batch, epochs=True),
                    val_dataloaders=val, ckpt_path=last if resumable_checkpoint(last, self.console) else None,
                    weights_only=True)
        fit_seconds = time.perf_counter() - start
        trainer.save_checkpoint(self.out / "model.ckpt", weights_only=False)
        trainer.test(module, dataloaders=self.loader("test", e.test_episodes, e.meta_batch), verbose=False)
        mean, ci = mean_ci95(module.test_scores)
        results: dict[str, Any] = {
            "method": c.method, "metric": "mse" if self.episodes.regression else "accuracy",
            "inner_steps": c.inner.steps, "eval_inner_steps": module.eval_steps, "first_order": module.first_order,
            "adapt": module.adapt_mode, "learn_inner_lr": c.inner.learn_lr,
            "test": {"mean": mean, "ci95": ci, "episodes": len(module.test_scores), "scores": module.test_scores},
            "seconds_per_meta_iteration": timer.mean(), "fit_seconds": fit_seconds,
            "graph_mib_per_meta_iteration": self.graph_mib(module),
            "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if module.device.type == "cuda" else None,
        }
        if c.baselines is not None and not self.episodes.regression:
            results["baselines"] = self.baselines(BaselineConfig(**c.baselines))
        atomic_write_text(self.out / "results.json", json.dumps(results, indent=1) + "\n")
        return results

    def graph_mib(self, module: MetaModule) -> float:
        """Autograd-saved memory of one meta-iteration (the first meta-batch of meta-training), in MiB."""
        batch = next(iter(self.loader("train", self.cfg.episodes.meta_batch, self.cfg.episodes.meta_batch)))
        batch = tuple(t.to(module.device) for t in batch)
        module.train()
        try:
            nbytes = graph_bytes(lambda: module.meta_loss(batch)[0])
        finally:
            module.zero_grad(set_to_none=True)
        return nbytes / 2 ** 20

    def baselines(self, cfg: BaselineConfig) -> dict[str, Any]:
        """The paradigms on the run's meta-test episodes, with a network trained on its meta-train classes."""
        ep = self.episodes
        net, step_seconds = pretrain(ep.images.images, ep.images.labels, ep.splits["train"], self.network(), cfg,
                                     self.cfg.seed)
        n = self.cfg.episodes.test_episodes
        scored = score_paradigms(net, lambda i: ep.source.episode("test", i), n, cfg)
        for entry in scored.values():
            entry["mean"], entry["ci95"] = mean_ci95(entry["scores"])
            entry["train_seconds_per_step"] = step_seconds
        return scored
