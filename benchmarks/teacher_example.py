"""Run the "your own teacher" example and render its measured section of docs/teacher.md.

Two commands, as the page shows them: a digits teacher trained alone (``distill run recipes/digits-ban.yaml
--generations 0``), then ``recipes/digits-kd-loaded.yaml``, which loads that run's ``gen-0/model.ckpt`` and teaches a
small_cnn of width 8. The second run's summary, the wall time of each command, the test-set size and the machine,
load, date and commit go to ``docs/data/teacher-example.json``; the page's section is rendered from it
(``benchmarks/teacher_example_page.py``), which the tests check.

Usage: ``python -m benchmarks.teacher_example [--work DIR]`` (from the repository root).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import ROOT
from benchmarks.machine import provenance
from benchmarks.pages import publish

DATA = "docs/data/teacher-example.json"


def _distill(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "distill.cli", *args, "--trainer.enable_progress_bar", "false"], cwd=cwd,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="where the two runs go (default: a temporary dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="distill-teacher-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipes").mkdir(exist_ok=True)
    for name in ("digits-ban.yaml", "digits-kd-loaded.yaml"):  # the recipes' relative paths resolve under work/
        (work / "recipes" / name).write_text((ROOT / "recipes" / name).read_text())
    machine = provenance()
    teacher_wall = _distill("run", "recipes/digits-ban.yaml", "--out", "runs/digits-ban", "--generations", "0",
                            cwd=work)
    student_wall = _distill("run", "recipes/digits-kd-loaded.yaml", "--out", "runs/digits-kd-loaded", cwd=work)
    run = work / "runs" / "digits-kd-loaded"
    summary = json.loads((run / "summary.json").read_text())
    generations = [{"generation": g["generation"], "backbone": g["backbone"],
                    "source": g["source"].replace(f"{work.resolve()}/", ""),  # the path as the page's command gives it
                    "epochs": g["epochs"], "test_acc": g["test"]["acc"], "test_nll": g["test"]["nll"],
                    "agreement_with_teacher": g["agreement_with_teacher"]} for g in summary["generations"]]
    publish(DATA, {
        "machine": machine, "teacher_wall_seconds": round(teacher_wall, 1),
        "student_wall_seconds": round(student_wall, 1),
        "test_images": int(np.load(run / "gen-0" / "test_logits.npy").shape[0]), "generations": generations,
    })
    print(f"wrote {DATA} and its section of docs/teacher.md from runs in {work}")


if __name__ == "__main__":
    main()
