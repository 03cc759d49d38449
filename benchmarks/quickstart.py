"""Run the README's quick start as a user would, time it, and render its table into README.md and the docs.

    python -m benchmarks.quickstart        # runs `distill run recipes/digits-ban.yaml` into runs/quickstart

Writes ``docs/data/quickstart.json`` (the run's summary, wall time of the whole command, machine, date, commit) and
re-renders the sections that quote it (``benchmarks/quickstart_page.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

import numpy as np

from benchmarks import ROOT
from benchmarks.machine import provenance
from benchmarks.pages import publish

COMMAND = ["distill", "run", "recipes/digits-ban.yaml"]


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help, nothing else
    out = ROOT / "runs" / "quickstart"
    shutil.rmtree(out, ignore_errors=True)
    prov = provenance()
    start = time.perf_counter()
    subprocess.run([*COMMAND, "--out", str(out)], cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    test_images = int(np.load(out / "gen-0" / "test_logits.npy", allow_pickle=False).shape[0])
    data = {"provenance": prov, "command": " ".join(COMMAND), "wall_seconds": round(wall, 1),
            "test_images": test_images, "summary": summary}
    print("rendered:", ", ".join(publish("docs/data/quickstart.json", data)))


if __name__ == "__main__":
    sys.exit(main())
