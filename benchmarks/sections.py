"""The section table: which renderer fills which marked section of which page, from which JSON, written by which
script. Data, in one place; :mod:`benchmarks.pages` does the rendering and checking.

A page holds a section between two markers::

    <!-- generated: NAME from docs/data/FILE.json by python -m benchmarks.SCRIPT; do not edit -->
    ...
    <!-- end generated: NAME -->

A result of the benchmark suite on a GPU (``benchmarks/gpu.sh``) fills a copy of docs/benchmarks.md,
``docs/benchmarks-gpu.md``, from ``docs/data/benchmarks-gpu.json``; once such a page is committed, list its sections
here with :func:`suite` as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import (
    backbones_page,
    cache_scale_page,
    cli_reference_page,
    dark_knowledge_page,
    data_pipeline_page,
    export_card_page,
    inspect_speed_page,
    meta_ksweep_page,
    meta_results_page,
    meta_sinusoid_page,
    methods_page,
    prompt_capital_page,
    prompt_region_page,
    prompt_results_page,
    quickstart_page,
    results_page,
    step_cost_page,
    steps_per_call_page,
    suite_page,
    sweep_workers_page,
    teacher_example_page,
)


@dataclass(frozen=True)
class Section:
    """One generated section: its name (unique within its page), the page, the JSON it is rendered from, the module
    whose run writes that JSON, and the renderer (JSON in, Markdown out)."""

    name: str
    page: str
    data: str
    script: str
    render: Callable[[dict[str, Any]], str]

    def begin(self) -> str:
        return f"<!-- generated: {self.name} from {self.data} by python -m {self.script}; do not edit -->"

    def end(self) -> str:
        return f"<!-- end generated: {self.name} -->"


def suite(page: str, data: str) -> list[Section]:
    """The sections of a benchmark-suite page (docs/benchmarks.md, or a GPU result's copy of it)."""
    return [Section(name, page, data, "benchmarks.run", render) for name, render in (
        ("benchmarks-run", suite_page.run), ("benchmarks-goals", suite_page.goals),
        ("benchmarks-regimes", suite_page.regimes), ("benchmarks-bytes", suite_page.bytes_per_view),
        ("benchmarks-accuracy", suite_page.accuracy), ("benchmarks-ban", suite_page.ban),
        ("benchmarks-gpu", suite_page.gpu))]


QUICKSTART = "docs/data/quickstart.json"
RESULTS = "docs/data/results.json"
BACKBONES = "docs/data/backbones.json"
DARK = "docs/data/dark-knowledge.json"
META = "docs/meta-learning.md"
METHODS = "docs/data/methods.json"
CLI = "docs/data/cli.json"
LM = "docs/language-models.md"
REGION = "docs/data/prompt-region.json"

SECTIONS: list[Section] = [
    Section("quickstart-readme", "README.md", QUICKSTART, "benchmarks.quickstart", quickstart_page.table),
    Section("quickstart-page", "docs/quickstart.md", QUICKSTART, "benchmarks.quickstart", quickstart_page.table),
    Section("recipes-digits", "docs/recipes.md", QUICKSTART, "benchmarks.quickstart", quickstart_page.recipes_digits),
    Section("recipes-fashion", "docs/recipes.md", RESULTS, "benchmarks.results", results_page.recipes_fashion),
    Section("results", "docs/results.md", RESULTS, "benchmarks.results", results_page.results),
    Section("backbones-families", "docs/backbones.md", BACKBONES, "benchmarks.backbones", backbones_page.families),
    Section("backbones-small", "docs/backbones.md", BACKBONES, "benchmarks.backbones", backbones_page.small),
    Section("teacher-example", "docs/teacher.md", "docs/data/teacher-example.json", "benchmarks.teacher_example",
            teacher_example_page.example),
    Section("methods-setting", "docs/methods.md", METHODS, "benchmarks.methods", methods_page.setting),
    Section("methods-table", "docs/methods.md", METHODS, "benchmarks.methods", methods_page.methods),
    Section("methods-cost", "docs/methods.md", METHODS, "benchmarks.methods", methods_page.cost),
    Section("methods-step-cost", "docs/methods.md", "docs/data/step-cost.json", "benchmarks.step_cost",
            step_cost_page.cost),
    Section("lm-region-setting", LM, REGION, "benchmarks.prompt_region", prompt_region_page.setting),
    Section("lm-region-table", LM, REGION, "benchmarks.prompt_region", prompt_region_page.methods),
    Section("lm-region-size", LM, REGION, "benchmarks.prompt_region", prompt_region_page.size_claim),
    Section("lm-region-generation", LM, REGION, "benchmarks.prompt_region", prompt_region_page.generation),
    Section("prompt-results", "docs/prompts.md", "docs/data/prompt-results.json", "benchmarks.prompt_results",
            prompt_results_page.results),
    *(Section(f"capital-{name}", "docs/prompt-results-lm.md", "docs/data/prompt_capital.json",
              "benchmarks.prompt_capital", render) for name, render in (
        ("setting", prompt_capital_page.setting), ("zero-shot", prompt_capital_page.zero_shot),
        ("soft", prompt_capital_page.soft), ("sampling", prompt_capital_page.sampling),
        ("depth", prompt_capital_page.depth))),
    Section("datasets-speed", "docs/datasets.md", "docs/data/data-pipeline.json", "benchmarks.data_pipeline",
            data_pipeline_page.speed),
    Section("speed-steps-per-call", "docs/concepts.md", "docs/data/steps-per-call.json", "benchmarks.steps_per_call",
            steps_per_call_page.timing),
    Section("dk-runs", "docs/dark-knowledge.md", DARK, "benchmarks.dark_knowledge", dark_knowledge_page.runs),
    Section("dk-asymmetry", "docs/dark-knowledge.md", DARK, "benchmarks.dark_knowledge", dark_knowledge_page.asymmetry),
    Section("dk-pairs", "docs/dark-knowledge.md", DARK, "benchmarks.dark_knowledge", dark_knowledge_page.pairs),
    Section("dk-neighbours", "docs/dark-knowledge.md", DARK, "benchmarks.dark_knowledge",
            dark_knowledge_page.neighbours),
    Section("dk-entropy", "docs/dark-knowledge.md", DARK, "benchmarks.dark_knowledge", dark_knowledge_page.entropy),
    Section("dk-fashion", "docs/dark-knowledge.md", DARK, "benchmarks.dark_knowledge", dark_knowledge_page.fashion),
    Section("dk-speed", "docs/dark-knowledge.md", "docs/data/inspect-speed.json", "benchmarks.inspect_speed",
            inspect_speed_page.speed),
    Section("meta-results", META, "docs/data/meta-results.json", "benchmarks.meta_results",
            meta_results_page.meta_results),
    Section("meta-results-reading", META, "docs/data/meta-results.json", "benchmarks.meta_results",
            meta_results_page.meta_results_reading),
    Section("meta-sinusoid", META, "docs/data/meta-sinusoid.json", "benchmarks.meta_sinusoid",
            meta_sinusoid_page.meta_sinusoid),
    Section("meta-ksweep", META, "docs/data/meta-ksweep.json", "benchmarks.meta_ksweep", meta_ksweep_page.meta_ksweep),
    Section("meta-ksweep-answers", META, "docs/data/meta-ksweep.json", "benchmarks.meta_ksweep",
            meta_ksweep_page.meta_ksweep_answers),
    Section("cache-scale", "docs/cache-scale.md", "docs/data/cache-scale.json", "benchmarks.cache_scale",
            cache_scale_page.scale),
    Section("export-card", "docs/export.md", "docs/data/export-card.json", "benchmarks.export_card",
            export_card_page.card),
    Section("sweep-workers", "docs/distributed.md", "docs/data/sweep-workers.json", "benchmarks.sweep_workers",
            sweep_workers_page.timing),
    *suite("docs/benchmarks.md", "docs/data/benchmarks.json"),
    *(Section(f"cli-{command.split()[-2]}", "docs/cli.md", CLI, "benchmarks.cli_reference",
              cli_reference_page.usage(command)) for command in cli_reference_page.COMMANDS),
]
