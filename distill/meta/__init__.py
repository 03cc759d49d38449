"""Meta-learning: episodes from any dataset, the MAML inner loop on ``torch.func``, the meta-learning module and the
three paradigms as baselines. ``distill meta RECIPE`` runs it (see docs/meta-learning.md)."""

from distill.meta.baselines import PARADIGMS, BaselineConfig
from distill.meta.episodes import ClassEpisodes, EpisodeDataset, EpochEpisodes, split_classes
from distill.meta.inner import adapt, query_loss
from distill.meta.module import METHODS, MetaModule, mean_ci95
from distill.meta.networks import NETWORKS
from distill.meta.sinusoid import SinusoidTasks
from distill.meta.sources import SOURCES, load_source

__all__ = ["METHODS", "NETWORKS", "PARADIGMS", "SOURCES", "BaselineConfig", "ClassEpisodes", "EpisodeDataset",
           "EpochEpisodes", "MetaModule", "SinusoidTasks", "adapt", "load_source", "mean_ci95", "query_loss",
           "split_classes"]
