"""Bring your own teacher: the network of a *loaded* generation 0 (``load:`` in the recipe) instead of a trained one.

Three sources (:class:`~distill.spec.LoadSpec`):

* ``pretrained: true`` -- ``timm.create_model(name, pretrained=True)``: timm's hub weights (needs the network);
* ``file: PATH`` -- a local weights file through timm's own loading path,
  ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": PATH})`` (``torch.load`` with
  ``weights_only=True``, or safetensors; classifier and first convolution adapted by timm when the class count or
  input channels differ);
* ``checkpoint: RUN/gen-k/model.ckpt`` -- a generation of another distill run, its recipe's backbone rebuilt.

The loop then treats the network like a trained generation 0: it is evaluated, cached and taught from, and saved
as ``gen-0/model.ckpt`` so that resume, the cache manifest and ``distill inspect`` see one kind of generation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import timm
from torch import nn

from distill.callbacks import AtomicCheckpointIO
from distill.models import BackboneError
from distill.spec import GenerationSpec, thaw


def load_network(spec: GenerationSpec, num_classes: int, in_chans: int,
                 from_checkpoint: Callable[[Path], nn.Module] | None) -> nn.Module:
    """Generation 0's network with the weights ``spec.load`` names, in eval mode.

    Args:
        spec: generation 0's spec (``spec.load`` set).
        num_classes: classes of the dataset.
        in_chans: input channels of the dataset.
        from_checkpoint: the task's ``network_from_checkpoint`` bound to its spec and context (for
            ``checkpoint``).

    Raises:
        BackboneError: the weights cannot be loaded into the backbone (one line, naming the file).
    """
    load = spec.load
    if load.kind == "checkpoint":
        try:
            return from_checkpoint(Path(load.path)).eval()
        except (RuntimeError, KeyError) as e:
            raise BackboneError(f"load.checkpoint {load.path} does not fit backbone {spec.label!r}: "
                                f"{_first_line(e)}") from None
    backbone = thaw(spec.backbone)
    name = backbone if isinstance(backbone, str) else backbone["name"]
    kwargs = {} if isinstance(backbone, str) else dict(backbone.get("init_args") or {})
    where = f"load.file {load.path}" if load.kind == "file" else f"load.pretrained ({name})"
    if load.kind == "file":  # the file's classifier is the teacher's: timm must keep it, not swap in a fresh one
        kwargs["pretrained_cfg_overlay"] = {"file": load.path, "num_classes": num_classes}
    else:
        hub_classes = timm.models.get_pretrained_cfg(name).num_classes
        if hub_classes != num_classes:  # timm would replace the classifier with an untrained one: no teacher
            raise BackboneError(f"{where}: timm's weights classify {hub_classes} classes, the dataset has "
                                f"{num_classes}; a loaded teacher needs its trained classifier")
    try:
        model = timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except (RuntimeError, OSError, ValueError, KeyError) as e:  # missing/mismatched weights, no network
        raise BackboneError(f"{where} cannot be loaded: {type(e).__name__}: {_first_line(e)}") from None
    return model.eval()


def save_network(model: nn.Module, path: Path, spec: GenerationSpec) -> None:
    """Write ``gen-0/model.ckpt`` for a loaded network: the layout of a trained generation's final checkpoint.

    ``state_dict`` holds ``student.*`` tensors, ``hyper_parameters`` plain values, ``source`` where it came from and
    ``backbone`` the network's spec as JSON (a run that loads this checkpoint in turn rebuilds the network from it),
    so it loads with ``weights_only=True`` like every checkpoint of a run.
    """
    state = {"state_dict": {f"student.{k}": v.detach().cpu() for k, v in model.state_dict().items()},
             "hyper_parameters": {"generation": spec.index}, "source": spec.load.describe(),
             "backbone": json.dumps(thaw(spec.backbone))}  # so that a run loading this one rebuilds the network
    AtomicCheckpointIO().save_checkpoint(state, path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return " ".join(text.splitlines()[0].split()) if text else ""
