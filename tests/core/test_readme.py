"""Every snippet of README.md runs as written, so the README cannot drift from the code.

Each ``## `` section of the README is one test: its ```python blocks run in order in one
namespace (top-level ``await`` allowed, as in a notebook), and its ```bash blocks'
``datashunt ...`` lines run through ``datashunt.cli.main`` in between, as a reader would run
them. Everything is offline and hermetic:

- the working directory is a temporary folder, so ``runs/...`` paths land there. The gate
  directories the README reads (:data:`GATES`) hold tiny random BERTs and a policy, as
  ``datashunt train-gate`` would leave them; ``datashunt calibrate`` then runs for real;
- the LLM is a loopback OpenAI-compatible fake (:class:`FaultProxy` answering one label,
  :data:`ANSWERS`): ``OPENAI_API_KEY`` is a dummy, ``OPENAI_BASE_URL`` points at the fake, and
  the local server's address the README shows (:data:`LOCAL_URL`) is replaced by the fake's;
- ``datashunt.llm.LLMServer`` starts no llama.cpp child: its stand-in serves the fake's address.

A block that cannot run here is marked ``<!-- readme-test: skip (reason) -->`` on the line
before it (at most :data:`MAX_SKIPPED` may be). A ``datashunt`` command too slow to run here
(:data:`NOT_RUN`) is still parsed by the real argument parser, so its options cannot drift.
Whatever is not run is reported as a skipped test with its reason (``pytest -ra``).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import inspect
import io
import re
import shlex
import shutil
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import datashunt.llm
from datashunt import ShuntPolicy, ShuntResult
from datashunt.cli import build_parser, main
from datashunt.llm import LLMServer
from langchain_datashunt import ShuntOutput
from tests.conftest import build_tiny_bert
from tests.support.faultproxy import FaultProxy

README = Path(__file__).resolve().parents[2] / "README.md"

#: At most this many blocks may be marked ``<!-- readme-test: skip (...) -->``.
MAX_SKIPPED = 1
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->")

#: The gate directories the README's snippets load, and their labels.
GATES = {"runs/gate": ("negative", "positive"), "runs/topic-gate": ("sports", "weather")}
#: What the fake LLM answers in each section (default: the first label of runs/gate).
ANSWERS = {"LlamaIndex": "weather"}
#: The local server's address as the README shows it (``datashunt llm-server --port 8080``).
LOCAL_URL = "http://127.0.0.1:8080/v1"

#: ``datashunt`` subcommands that are parsed but not run, and why.
NOT_RUN = {
    "train-gate": "fine-tunes all-MiniLM-L6-v2 (minutes on CPU); its stand-in is a tiny gate "
    "(the real fine-tune is tests/core/test_real_gate.py, marker slow)",
    "bench": "trains a gate per data set and asks an LLM hundreds of times (minutes; a hosted "
    "key for --llm-url https://...); tests/core/test_benchmark.py runs it on tiny data",
}
#: Other shell lines are not run either.
OTHER_LINES = "not a datashunt command (make targets: `make test` runs this file)"


# ---- reading the README ---------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    section: str  # the ``## `` heading it is under (``### `` subsections share it)
    lang: str
    code: str
    line: int  # README line of its first code line
    skip: str | None  # the reason of a skip mark on the line before it


@dataclass(frozen=True)
class Command:
    """One line of a ```bash block."""

    argv: tuple[str, ...]
    text: str
    line: int
    section: str

    @property
    def not_run(self) -> str | None:
        if self.argv[:1] != ("datashunt",):
            return OTHER_LINES
        return NOT_RUN.get(self.argv[1]) if len(self.argv) > 1 else None


def read_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with their section and skip mark."""
    blocks: list[Block] = []
    section, previous = "", ""
    fence: tuple[str, int, str | None] | None = None  # (lang, first line, skip reason)
    body: list[str] = []
    for no, line in enumerate(text.splitlines(), 1):
        if fence is None:
            if line.startswith("```"):
                mark = SKIP_MARK.fullmatch(previous.strip())
                fence, body = (line[3:].strip(), no + 1, mark["reason"] if mark else None), []
            elif line.startswith("## "):
                section = line[3:].strip()
            if line.strip():
                previous = line
        elif line.startswith("```"):
            lang, first, skip = fence
            blocks.append(Block(section, lang, "\n".join(body) + "\n", first, skip))
            fence, previous = None, ""
        else:
            body.append(line)
    assert fence is None, f"README.md: the code block opened at line {fence[1] - 1} never closes"
    return blocks


def read_commands(block: Block) -> list[Command]:
    """The shell command lines of a ```bash block (comments dropped)."""
    out = []
    for i, line in enumerate(block.code.splitlines()):
        argv = tuple(shlex.split(line, comments=True))
        if argv:
            out.append(Command(argv, line.split("#")[0].strip(), block.line + i, block.section))
    return out


BLOCKS = read_blocks(README.read_text(encoding="utf-8"))
COMMANDS = [c for b in BLOCKS if b.lang == "bash" and b.skip is None for c in read_commands(b)]
SECTIONS = list(
    dict.fromkeys(
        b.section
        for b in BLOCKS
        if b.skip is None
        and (b.lang == "python" or any(c.not_run is None for c in read_commands(b)))
    )
)


# ---- the stand-ins --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gate_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random BERT per gate directory the README uses (built once)."""
    root = tmp_path_factory.mktemp("readme-gates")
    return {rel: build_tiny_bert(root / str(i), labels) for i, (rel, labels) in enumerate(GATES.items())}


class StandInServer(LLMServer):
    """``LLMServer`` without llama.cpp: "starts" by pointing at the fake endpoint.

    Everything a snippet reads (``base_url``, ``model_name``, the context manager) is the real
    class's; only the child process is left out.
    """

    endpoint: FaultProxy  # set by the fixture

    def __init__(self, model_path: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(model_path or "SmolLM2-135M-Instruct.Q4_1.gguf", **kwargs)

    def start(self) -> LLMServer:
        self.host, self.port = "127.0.0.1", self.endpoint.port
        return self

    def stop(self) -> None:
        pass


@pytest.fixture
def fake_llm(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A loopback OpenAI-compatible endpoint answering the section's label, as every LLM the
    README configures: by environment, by the README's local address, or by ``LLMServer``."""
    section = request.node.callspec.params["section"]
    answer = ANSWERS.get(section, GATES["runs/gate"][0])
    with FaultProxy(None, default=f"answer:{answer}") as proxy:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-readme-test")
        monkeypatch.setenv("OPENAI_BASE_URL", proxy.base_url)
        monkeypatch.setattr(StandInServer, "endpoint", proxy, raising=False)
        monkeypatch.setattr(datashunt.llm, "LLMServer", StandInServer)
        yield proxy


@pytest.fixture
def workdir(tmp_path: Path, gate_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding the gate directories, with a policy that sends every input
    of a tiny random gate (confidence about 0.5) to the LLM."""
    for rel, model in gate_models.items():
        shutil.copytree(model, tmp_path / rel)
        ShuntPolicy(GATES[rel], threshold=0.9).save(tmp_path / rel)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- running ---------------------------------------------------------------------------------


def run_python(block: Block, namespace: dict[str, Any], base_url: str) -> None:
    """Execute a block in ``namespace``; tracebacks point at README.md's own lines."""
    source = block.code.replace(LOCAL_URL, base_url)
    tree = ast.parse(source, filename=str(README))
    ast.increment_lineno(tree, block.line - 1)
    code = compile(tree, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    try:
        result = eval(code, namespace)  # noqa: S307 - the README's own code, which is the point
        if inspect.iscoroutine(result):  # the block awaits at top level, as in a notebook
            asyncio.run(result)
        return
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        line = next((f.lineno for f in reversed(frames) if f.filename == str(README)), block.line)
        why = f"{type(exc).__name__}: {exc}\n\n{''.join(traceback.format_exception(exc))}"
    pytest.fail(f"README.md:{line} (section {block.section!r}) raised {why}", pytrace=False)


def run_command(cmd: Command) -> str:
    """Run a ``datashunt`` line through the CLI's ``main``; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(list(cmd.argv[1:]))
    assert rc == 0, f"README.md:{cmd.line}: `{cmd.text}` exited {rc}:\n{out.getvalue()}"
    return out.getvalue()


def answers(namespace: dict[str, Any]) -> list[ShuntResult | ShuntOutput]:
    """The answers a section left in its variables: core results, LangChain outputs (alone or
    in lists), and the result a LlamaIndex selection carries."""
    found: list[ShuntResult | ShuntOutput] = []
    for value in namespace.values():
        for item in value if isinstance(value, list | tuple) else [value]:
            item = getattr(item, "result", item)  # noqa: PLW2901 - a selection's own result
            if isinstance(item, ShuntResult | ShuntOutput):
                found.append(item)
    return found


@pytest.mark.parametrize("section", SECTIONS)
def test_section_runs(section: str, workdir: Path, fake_llm: FaultProxy) -> None:
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    for block in BLOCKS:
        if block.section != section or block.skip is not None:
            continue
        if block.lang == "python":
            run_python(block, namespace, fake_llm.base_url)
        else:
            for cmd in read_commands(block):
                if cmd.not_run is None:
                    run_command(cmd)

    if not any(b.section == section and b.lang == "python" for b in BLOCKS):
        return
    found = answers(namespace)
    assert found, f"README section {section!r} left no answer in a variable to check"
    labels = {lab for labs in GATES.values() for lab in labs}
    assert all(a.label in labels for a in found), [a.label for a in found]
    # An LLM the README configures wrongly (no key, a wrong address) falls back silently.
    failed = [a.error for a in found if a.source == "fallback"]
    assert not failed, f"README section {section!r}: LLM calls failed: {failed}"
    print(f"{section}: sources {[a.source for a in found]}, {fake_llm.requests} LLM requests")


def test_quickstart_reaches_the_llm(workdir: Path, fake_llm: FaultProxy) -> None:
    """The quickstart's chat model is really called: key and address are right as written."""


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"README:{c.line}" for c in COMMANDS])
def test_command_parses(cmd: Command) -> None:
    if cmd.argv[:1] != ("datashunt",):
        pytest.skip(f"README.md:{cmd.line}: `{cmd.text}`: {OTHER_LINES}")
    if cmd.argv[1:2] == ("llm-server",):
        return  # its options belong to the server's own parser (see datashunt.cli.main)
    try:
        build_parser().parse_args(list(cmd.argv[1:]))
    except SystemExit as exc:  # argparse reports a bad option this way
        pytest.fail(f"README.md:{cmd.line}: `{cmd.text}` does not parse (exit {exc.code})")


def _not_run() -> list[Any]:
    items = [
        pytest.param(f"README.md:{b.line} ({b.lang} block): {b.skip}", id=f"README:{b.line}")
        for b in BLOCKS
        if b.skip is not None
    ]
    items += [
        pytest.param(f"README.md:{c.line} `{c.text}`: {c.not_run}", id=f"README:{c.line}")
        for c in COMMANDS
        if c.not_run is not None
    ]
    return items


@pytest.mark.parametrize("why", _not_run())
def test_not_run(why: str) -> None:
    """One skipped test per block or command that does not run, so -ra lists each with why."""
    pytest.skip(why)


def test_the_readme_is_read_and_few_blocks_are_skipped() -> None:
    langs = {b.lang for b in BLOCKS}
    assert langs <= {"python", "bash"}, f"README blocks in a language no test runs: {langs}"
    assert sum(b.lang == "python" for b in BLOCKS) >= 5, "the README's python blocks were not found"
    skipped = [b for b in BLOCKS if b.skip is not None]
    assert len(skipped) <= MAX_SKIPPED, (
        f"{len(skipped)} README blocks are marked `readme-test: skip` (at most {MAX_SKIPPED}): "
        + ", ".join(f"line {b.line} ({b.skip})" for b in skipped)
    )
    assert all(c.argv[1] in NOT_RUN or c.not_run is None for c in COMMANDS if len(c.argv) > 1)


def test_parser_finds_sections_skip_marks_and_commands() -> None:
    text = (
        "# t\n## One\n```python\nx = 1\n```\n### Sub\n"
        "<!-- readme-test: skip (needs a hosted key) -->\n```bash\ndatashunt bench  # slow\n"
        "make demo\n```\n## Two\n```python\n## not a heading\n```\n"
    )
    one, two, three = read_blocks(text)
    assert (one.section, one.lang, one.code, one.line, one.skip) == ("One", "python", "x = 1\n", 4, None)
    assert (two.section, two.skip, two.line) == ("One", "needs a hosted key", 9)
    assert [(c.argv, c.line, c.text) for c in read_commands(two)] == [
        (("datashunt", "bench"), 9, "datashunt bench"),
        (("make", "demo"), 10, "make demo"),
    ]
    assert (three.section, three.code) == ("Two", "## not a heading\n")


def test_cli_parser_is_the_real_one() -> None:
    assert isinstance(build_parser(), argparse.ArgumentParser)
