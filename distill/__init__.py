"""distill: knowledge distillation and Born-Again Networks on PyTorch Lightning.

Importing the package registers the project's backbones -- the CIFAR families and ``small_cnn`` into timm's registry,
``prompted_vit`` into :data:`distill.models.BACKBONES`, and the ``distill_backbone`` and ``distill_ensemble`` timm
entrypoints that exported folders name -- and its datasets (the text one included) into
:data:`distill.data.DATASETS`; nothing else happens at import time.
"""

__version__ = "0.1.0"

from distill.data import DATASETS, DistillDataModule  # noqa: E402
from distill.export import timm_folder  # noqa: E402,F401  (timm entrypoints of exported folders)
from distill.losses import LOSSES, CWTMLoss, DKPPLoss, KDLoss, cwtm_weights, dkpp_permute, kd_kl  # noqa: E402
from distill.models import BACKBONES, create_backbone, register_backbone  # noqa: E402
from distill.prompts import prompted_vit  # noqa: E402  (registers the prompted_vit backbone)
from distill.registry import Registry  # noqa: E402
from distill.text import bag, data  # noqa: E402,F401  (the text dataset and token_bag; transformers on use)

__all__ = ["BACKBONES", "CWTMLoss", "DATASETS", "DKPPLoss", "DistillDataModule", "KDLoss", "LOSSES", "Registry",
           "__version__", "create_backbone", "cwtm_weights", "dkpp_permute", "kd_kl", "prompted_vit",
           "register_backbone"]
