"""User code the tests import by class path, as a user's own package would be: a backbone and two callbacks."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class TinyMLP(nn.Module):
    """A two-layer perceptron with a ``hidden`` width (the init argument the dotted-override test sets)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, hidden: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU())
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class RecordEpochs(L.Callback):
    """Appends the epoch number to a JSON list in ``path`` at the end of every training epoch.

    ``tags`` must arrive as a list, as the recipe wrote it (not a read-only tuple of the frozen spec).
    """

    def __init__(self, path: str, tags: list | None = None) -> None:
        if tags is not None and not isinstance(tags, list):
            raise TypeError(f"tags must be a list, got {type(tags).__name__}")
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seen = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.path.write_text(json.dumps([*seen, trainer.current_epoch]))


class TeacherKL(L.Callback):
    """Records, after every epoch, the student's mean KL(teacher || student) over the training set to ``path``.

    The teacher's logits come from the run's own cache (``cache/gen-{teacher}/logits.npy``), read as the engine
    wrote them; the student is scored on the un-augmented training set in eval mode.
    """

    def __init__(self, path: str, cache: str) -> None:
        self.path, self.cache = Path(path), Path(cache)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import numpy as np

        teacher = torch.from_numpy(np.load(self.cache / "logits.npy").astype("float32"))
        dm_loader = trainer.train_dataloader
        was = pl_module.training
        pl_module.eval()
        kls = []
        with torch.no_grad():
            for x, _, index in dm_loader:
                p = F.log_softmax(teacher[index], 1)
                q = F.log_softmax(pl_module.student(x), 1)
                kls.append((p.exp() * (p - q)).sum(1))
        pl_module.train(was)
        seen = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.path.write_text(json.dumps([*seen, float(torch.cat(kls).mean())]))
