"""Dark-knowledge inspection: pure functions on teacher logits/probabilities and labels, plus figures and tables.

Typical flow: ``probs = soften(logits, T)`` -> ``S = class_similarity(probs, labels, C)`` -> ``neighbours(S)``,
``most_similar_pairs(S)``, ``cluster_order(S)``, ``taxonomy_score(S, groups)``; ``label_noise_suspects(soften(logits))``
and ``reliability(...)`` at ``T = 1``; :mod:`distill.analysis.report` turns results into PNG/CSV/rich tables.
"""

from distill.analysis.drift import Reliability, entropy, js_divergence, reliability, similarity_drift
from distill.analysis.noise import Suspects, label_noise_suspects
from distill.analysis.report import (
    neighbours_table,
    pairs_table,
    plot_dendrogram,
    plot_image_grid,
    plot_reliability,
    plot_similarity_heatmap,
    suspect_captions,
    suspects_table,
    write_matrix_csv,
)
from distill.analysis.similarity import (
    Neighbours,
    Pairs,
    class_similarity,
    cluster_order,
    most_similar_pairs,
    neighbours,
    soften,
    symmetrise,
)
from distill.analysis.taxonomy import (
    BUILTIN_GROUPINGS,
    CLASS_NAMES,
    chance_taxonomy_score,
    grouping_indices,
    load_grouping,
    nearest_neighbour,
    taxonomy_score,
)

# The run loader imports the engine (Lightning, the data modules); load it only when asked for.
_RUN_EXPORTS = ("InspectError", "InspectableRun", "load_run")


def __getattr__(name: str):  # PEP 562 lazy attribute
    if name in _RUN_EXPORTS:
        from distill.analysis import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUILTIN_GROUPINGS",
    "InspectError",
    "InspectableRun",
    "CLASS_NAMES",
    "Neighbours",
    "Pairs",
    "Reliability",
    "Suspects",
    "chance_taxonomy_score",
    "class_similarity",
    "cluster_order",
    "entropy",
    "grouping_indices",
    "js_divergence",
    "label_noise_suspects",
    "load_grouping",
    "load_run",
    "most_similar_pairs",
    "nearest_neighbour",
    "neighbours",
    "neighbours_table",
    "pairs_table",
    "plot_dendrogram",
    "plot_image_grid",
    "plot_reliability",
    "plot_similarity_heatmap",
    "reliability",
    "similarity_drift",
    "soften",
    "suspect_captions",
    "suspects_table",
    "symmetrise",
    "taxonomy_score",
    "write_matrix_csv",
]
