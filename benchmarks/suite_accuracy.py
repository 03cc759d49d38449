"""Accuracy effects of the cache settings on real data: top-k vs full, clean vs replay vs online.

One teacher (generation 0, cross-entropy) is trained once; then one student per setting is trained from it with the
engine (:meth:`BornAgainRun.build_cache`, :meth:`BornAgainRun.train`, :meth:`BornAgainRun.evaluate`), all with the
same seed -- same initialisation and data order -- so the settings differ only in the teacher signal (and, for
replay, in which augmented views are drawn). Students use the Born-Again teacher-only loss (``alpha = 1``, ``T = 1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.suite_common import Profile, datamodule, engine_run, recipe
from distill.data import DataNotFoundError, DistillDataModule

#: student settings: name -> recipe overrides (the replay cache holds as many view epochs as the student trains).
SETTINGS = {
    "clean_full": ["--cache.mode", "clean"],
    "clean_topk": ["--cache.mode", "clean", "--cache.format", "topk"],
    "replay_full": ["--cache.mode", "replay"],
    "online_full": ["--cache.mode", "online"],
}


def schedule(profile: Profile) -> str:
    """One line describing the accuracy runs of ``profile``."""
    test = f"first {profile.test_subset} test images" if profile.test_subset else "the full test set"
    return (f"{profile.dataset}, a fixed random {profile.acc_train} training images, {profile.backbone}, batch "
            f"{profile.batch_size}, SGD lr 0.05 cosine, {profile.acc_epochs} epoch(s) for the teacher and each student "
            f"(replay cache.epochs {profile.acc_epochs}, top-k k={profile.acc_topk}), one seed, {test}")


def run_accuracy(profile: Profile, work: Path, dm: DistillDataModule | None = None) -> dict[str, Any]:
    """Test accuracy (percent) of the teacher and of a student per setting, and the differences the goals are about.

    ``dm``: the data module to use when the caller already has one of the right size. Returns every key even
    without the data (values None and a ``note``).
    """
    out: dict[str, Any] = {"schedule": schedule(profile), "quick": profile.quick,
                           "accuracy": dict.fromkeys(["teacher", *SETTINGS]), "note": None}
    try:
        dm = dm or datamodule(profile, profile.acc_train)[0]
    except DataNotFoundError as e:
        out["note"] = f"not measured: {e}"
        out.update(topk_minus_full_points=None, replay_minus_online_points=None, clean_minus_online_points=None)
        return out
    n, epochs = profile.acc_train, profile.acc_epochs
    out["test_images"] = len(dm.test_set)
    base = ["--cache.topk", str(profile.acc_topk), "--cache.epochs", str(epochs)]
    teacher_run = engine_run(recipe(profile, n, epochs, *base), work / "teacher", dm)
    g0 = teacher_run.specs[0]
    teacher, seconds = teacher_run.train(g0)
    out["accuracy"]["teacher"] = 100 * teacher_run.evaluate(g0, teacher, seconds)["test"]["acc"]
    out["train_seconds"] = {"teacher": round(seconds, 1)}
    for name, overrides in SETTINGS.items():
        run = engine_run(recipe(profile, n, epochs, *base, *overrides), work / name, dm,
                         teacher_run.layout.checkpoint(0))
        run.test_logits = dict(teacher_run.test_logits)
        g0, g1 = run.specs
        run.build_cache(g0, teacher)
        student, seconds = run.train(g1)
        out["accuracy"][name] = 100 * run.evaluate(g1, student, seconds)["test"]["acc"]
        out["train_seconds"][name] = round(seconds, 1)
    acc = out["accuracy"]
    out["topk_minus_full_points"] = acc["clean_topk"] - acc["clean_full"]
    out["replay_minus_online_points"] = acc["replay_full"] - acc["online_full"]
    out["clean_minus_online_points"] = acc["clean_full"] - acc["online_full"]
    return out
