"""The student leaves the run: export a generation (or the ensemble) and predict on image files.

* :mod:`~distill.export.source` -- :func:`~distill.export.source.open_run`: a finished run's network, its
  preprocessing, class names and metrics;
* :mod:`~distill.export.bundle` -- :func:`~distill.export.bundle.export_run`: a folder in one of the
  :data:`~distill.export.formats.FORMATS` (``timm``, ``onnx``, ``torchscript``), checked against PyTorch on real
  test images before it is kept, with a model card;
* :mod:`~distill.export.predict` -- :func:`~distill.export.predict.open_predictor` and
  :func:`~distill.export.predict.predict`: top-k classes of image files, from a run or an export folder.

This package's ``__init__`` imports nothing: ``import distill`` imports :mod:`~distill.export.timm_folder` only (it
registers the ``distill_backbone`` and ``distill_ensemble`` timm entrypoints that exported folders name).
"""
