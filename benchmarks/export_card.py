"""Export the quick start's ensemble as ONNX, as a user would, and show its model card in docs/export.md.

    python -m benchmarks.export_card    # trains recipes/digits-ban.yaml into runs/export-card/, then exports it

Writes ``docs/data/export-card.json`` (the two commands, their wall times, what the export printed, the model card it
wrote, machine, date, commit) and re-renders the section that shows them (``benchmarks/export_card_page.py``).
The commands run this checkout's ``distill`` (``python -m distill.cli``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from benchmarks import ROOT
from benchmarks.machine import provenance
from benchmarks.pages import publish

DATA = "docs/data/export-card.json"
RUN = ["run", "recipes/digits-ban.yaml", "--out", "runs/export-card/digits-ban"]
EXPORT = ["export", "runs/export-card/digits-ban", "--generation", "ensemble", "--format", "onnx", "--out",
          "runs/export-card/digits-ensemble"]


def _distill(args: list[str]) -> tuple[float, str]:
    """Run ``distill ARGS`` from the repository root; its wall time and what it printed on stdout."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "distill.cli", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True)
    return round(time.perf_counter() - start, 1), done.stdout


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help, nothing else
    shutil.rmtree(ROOT / "runs" / "export-card", ignore_errors=True)
    prov = provenance()
    run_seconds, _ = _distill(RUN)
    export_seconds, printed = _distill(EXPORT)
    card = (ROOT / EXPORT[-1] / "README.md").read_text()
    data = {"provenance": prov, "run": " ".join(["distill", *RUN]), "export": " ".join(["distill", *EXPORT]),
            "wall_seconds": {"run": run_seconds, "export": export_seconds}, "printed": printed.strip(),
            "card": card}
    print("rendered:", ", ".join(publish(DATA, data)))


if __name__ == "__main__":
    sys.exit(main())
