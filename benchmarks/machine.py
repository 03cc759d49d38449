"""The machine, load, date and commit a measurement ran on: stored in its JSON beside its numbers.

Two descriptions, each the schema of the JSON files that already hold it: :func:`provenance` (the guide pages'
measurements) and :func:`machine` (the benchmark suite, the meta-learning and methods benchmarks).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any

import lightning
import torch

from benchmarks import ROOT


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``)."""
    return [round(x, 2) for x in os.getloadavg()]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def provenance() -> dict[str, Any]:
    """CPU, cores, GPU, load, torch threads, date and short commit (with a dirty flag) of a measurement."""
    commit = (_git("rev-parse", "--short", "HEAD") or "").strip()
    status = _git("status", "--porcelain", "--untracked-files=no") or ""
    return {"cpu": _cpu(), "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average": load_average(), "torch_threads": torch.get_num_threads(), "date": str(date.today()),
            "commit": commit or "unknown", "dirty": bool(status.strip())}


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU, versions, torch threads, load average, date, commit and how many files were dirty."""
    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain")
    return {"cpu": _cpu(), "cores": os.cpu_count(), "load_average_at_start": load_average(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "lightning": lightning.__version__, "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit.strip() if commit else "unknown",
            "dirty_files": None if status is None else len(status.splitlines())}
