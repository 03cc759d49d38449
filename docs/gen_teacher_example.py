"""Run the "your own teacher" example and write its measured table into docs/teacher.md.

Two commands, as the page shows them: a digits teacher trained alone (``distill run recipes/digits-ban.yaml
--generations 0``), then ``recipes/digits-kd-loaded.yaml``, which loads that run's ``gen-0/model.ckpt`` and teaches a
small_cnn of width 8. The table between the page's markers is replaced with the second run's summary, the wall time
of each command, the machine, the date and the commit.

Usage: ``python docs/gen_teacher_example.py [--work DIR]`` (from the repository root).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from suite_common import machine  # noqa: E402  (the benchmarks' one machine description)

PAGE = ROOT / "docs" / "teacher.md"
START, END = "<!-- teacher-example:start -->", "<!-- teacher-example:end -->"


def _distill(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "distill.cli", *args, "--trainer.enable_progress_bar", "false"], cwd=cwd,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def table(summary: dict, teacher_wall: float, student_wall: float, work: Path) -> str:
    m = machine()
    rows = ["| model | backbone | source | epochs | test acc % | NLL | agree % |", "|---|---|---|---|---|---|---|"]
    for g in summary["generations"]:
        agree = "—" if g["agreement_with_teacher"] is None else f"{100 * g['agreement_with_teacher']:.2f}"
        source = g["source"].replace(f"{work.resolve()}/", "")  # the path as the page's command gives it
        rows.append(f"| gen-{g['generation']} | `{g['backbone']}` | {source} | {g['epochs']} | "
                    f"{100 * g['test']['acc']:.2f} | {g['test']['nll']:.3f} | {agree} |")
    return "\n".join([
        *rows, "",
        f"Measured by `python docs/gen_teacher_example.py` on {m['cpu']}, {m['cores']} cores, {m['gpu'] or 'no GPU'} "
        f"(load average {m['load_average_at_start']} when written), {m['date']}, commit `{m['commit'][:10]}`. "
        f"Wall time of the whole command: teacher {teacher_wall:.0f} s, loaded teacher + student {student_wall:.0f} s. "
        f"540 test digits: one image is 0.19 points.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="where the two runs go (default: a temporary dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="distill-teacher-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipes").mkdir(exist_ok=True)
    for name in ("digits-ban.yaml", "digits-kd-loaded.yaml"):  # the recipes' relative paths resolve under work/
        (work / "recipes" / name).write_text((ROOT / "recipes" / name).read_text())
    teacher_wall = _distill("run", "recipes/digits-ban.yaml", "--out", "runs/digits-ban", "--generations", "0",
                            cwd=work)
    student_wall = _distill("run", "recipes/digits-kd-loaded.yaml", "--out", "runs/digits-kd-loaded", cwd=work)
    summary = json.loads((work / "runs" / "digits-kd-loaded" / "summary.json").read_text())
    text = PAGE.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(f"{head}{START}\n{table(summary, teacher_wall, student_wall, work)}\n{END}{tail}")
    print(f"wrote {PAGE.relative_to(ROOT)} from runs in {work}")


if __name__ == "__main__":
    main()
