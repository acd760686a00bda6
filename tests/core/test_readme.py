"""Every snippet of README.md runs as written, so the README cannot drift from the code.

Each ``## `` section of the README with code is one test: its ```python blocks run in order in
one namespace and on one event loop (top-level ``await`` allowed, as in a notebook), and its
```bash blocks' ``datashunt ...`` lines run through ``datashunt.cli.main`` in between, as a
reader would run them. Everything is offline and hermetic:

- the working directory is a temporary folder, so ``runs/...`` paths land there. The gate
  directories the README reads (:data:`GATES`) hold tiny random BERTs and a policy, as
  ``datashunt train-gate`` would leave them; ``datashunt calibrate`` then runs for real;
- the LLM is a loopback OpenAI-compatible fake (:class:`FaultProxy` answering one label,
  :data:`ANSWERS`): ``OPENAI_API_KEY`` is a dummy, ``OPENAI_BASE_URL`` points at the fake, and
  the local server's address the README shows (:data:`LOCAL_URL`) is replaced by the fake's;
- ``datashunt.llm.LLMServer`` starts no llama.cpp child: its stand-in serves the fake's address.

A block that cannot run here is marked ``<!-- readme-test: skip (reason) -->`` on the line
before it; at most :data:`MAX_SKIPPED` may be. Every ``datashunt`` line, also in a skipped
block or too slow to run here (:data:`NOT_RUN`), is parsed by the real argument parser, so its
options cannot drift. What does not run is reported as a skipped test with its reason
(``pytest -ra`` lists them).
"""

from __future__ import annotations

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
from bench.faultproxy import FaultProxy
from datashunt import Shunt, ShuntPolicy, ShuntResult
from datashunt.cli import build_parser, main
from datashunt.llm import LLMServer
from tests.conftest import build_tiny_bert

README = Path(__file__).resolve().parents[2] / "README.md"

#: At most this many blocks may be marked ``<!-- readme-test: skip (...) -->``.
MAX_SKIPPED = 2
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->")

#: The gate directories the README's snippets load, and their labels.
GATES = {"runs/gate": ("negative", "positive"), "runs/topic-gate": ("sports", "weather")}
#: What the fake LLM answers in a section (default: the first label of runs/gate).
ANSWERS = {"LlamaIndex": "weather"}
#: The local server's address as the README shows it (``datashunt llm-server --port 8080``).
LOCAL_URL = "http://127.0.0.1:8080/v1"

#: ``datashunt`` subcommands that are parsed but not run, and why.
NOT_RUN = {
    "train-gate": "trains on all-MiniLM-L6-v2 (30-50 s for --kind embedding, minutes to "
    "fine-tune, on a CPU); a tiny gate stands in for its output (the real fine-tune: "
    "tests/core/test_real_gate.py, marker slow)",
    "bench": "trains a gate per data set and asks an LLM hundreds of times (minutes; a hosted "
    "key for an https:// --llm-url); tests/core/test_benchmark.py runs it on tiny data",
}
#: Why the other shell lines (``make ...``) are not run.
NOT_DATASHUNT = (
    "not a datashunt command (make targets take minutes, `make test` runs this file; the "
    "Install section's pip lines are resolved by tests/core/test_packaging.py)"
)


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
    """One shell command of a ```bash block."""

    argv: tuple[str, ...]
    line: int
    block: Block

    @property
    def text(self) -> str:
        return shlex.join(self.argv)

    @property
    def is_datashunt(self) -> bool:
        return self.argv[0] == "datashunt" and len(self.argv) > 1

    @property
    def not_run(self) -> str | None:
        """Why this command is not run, or None when it runs."""
        if not self.is_datashunt:
            return NOT_DATASHUNT
        return self.block.skip or NOT_RUN.get(self.argv[1])


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
    """The shell commands of a block (comments dropped, ``\\`` continuations joined)."""
    commands, pending, first = [], "", 0
    for i, line in enumerate(block.code.splitlines()):
        pending, first = (f"{pending} {line.strip()}", first) if pending else (line, i)
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        argv = tuple(shlex.split(pending, comments=True))
        if argv:
            commands.append(Command(argv, block.line + first, block))
        pending = ""
    return commands


BLOCKS = read_blocks(README.read_text(encoding="utf-8"))
COMMANDS = [c for b in BLOCKS if b.lang == "bash" for c in read_commands(b)]
DATASHUNT_COMMANDS = [c for c in COMMANDS if c.is_datashunt]
SECTIONS = list(
    dict.fromkeys(b.section for b in BLOCKS if b.lang == "python" and b.skip is None)
    | dict.fromkeys(c.block.section for c in COMMANDS if c.not_run is None)
)


# ---- the stand-ins --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gate_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random BERT per gate directory the README uses (built once)."""
    root = tmp_path_factory.mktemp("readme-gates")
    return {rel: build_tiny_bert(root / f"gate{i}", GATES[rel]) for i, rel in enumerate(GATES)}


def answer_for(section: str) -> str:
    """What the fake LLM answers in a section."""
    return ANSWERS.get(section, GATES["runs/gate"][0])


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
def fake_llm(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """A loopback OpenAI-compatible endpoint answering the section's label, behind every LLM
    the README configures: by environment, by the README's local address, by ``LLMServer``."""
    answer = answer_for(request.node.callspec.params["section"])
    with FaultProxy(None, default=f"answer:{answer}") as proxy:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-readme-test")
        monkeypatch.setenv("OPENAI_BASE_URL", proxy.base_url)
        monkeypatch.setattr(StandInServer, "endpoint", proxy, raising=False)
        monkeypatch.setattr(datashunt.llm, "LLMServer", StandInServer)
        yield proxy


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[ShuntResult]:
    """The result of every LLM call the README's snippets make, whatever the framework: each
    goes through ``Shunt.ask`` / ``aask``, the one place that calls, parses and records."""
    seen: list[ShuntResult] = []
    ask, aask = Shunt.ask, Shunt.aask

    def spy_ask(self: Shunt, *args: Any, **kwargs: Any) -> ShuntResult:
        seen.append(ask(self, *args, **kwargs))
        return seen[-1]

    async def spy_aask(self: Shunt, *args: Any, **kwargs: Any) -> ShuntResult:
        seen.append(await aask(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(Shunt, "ask", spy_ask)
    monkeypatch.setattr(Shunt, "aask", spy_aask)
    return seen


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


@contextlib.contextmanager
def section_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per section, current while it runs and closed after, as in a notebook.

    Top-level ``await`` runs on it, and so does the sync LlamaIndex API (its ``asyncio_run``
    takes the current loop, and would otherwise leave one of its own behind, unclosed).
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def run_python(
    block: Block, namespace: dict[str, Any], base_url: str, loop: asyncio.AbstractEventLoop
) -> None:
    """Execute a block in ``namespace``; a failure names the README line that raised."""
    source = block.code.replace(LOCAL_URL, base_url)
    tree = ast.parse(source, filename=str(README))
    ast.increment_lineno(tree, block.line - 1)  # tracebacks show README.md's own lines
    code = compile(tree, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    try:
        result = eval(code, namespace)  # noqa: S307 - the README's own code, which is the point
        if inspect.iscoroutine(result):  # the block awaits at top level
            loop.run_until_complete(result)
        return
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        line = next((f.lineno for f in reversed(frames) if f.filename == str(README)), block.line)
        why = f"{type(exc).__name__}: {exc}\n\n{''.join(traceback.format_exception(exc))}"
    pytest.fail(f"README.md:{line} (section {block.section!r}) raised {why}", pytrace=False)


def run_command(cmd: Command) -> None:
    """Run a ``datashunt`` line through the CLI's ``main``; it must exit 0."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(list(cmd.argv[1:]))
    assert rc == 0, f"README.md:{cmd.line}: `{cmd.text}` exited {rc}:\n{out.getvalue()}"


# ---- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("section", SECTIONS)
def test_section_runs(
    section: str, workdir: Path, fake_llm: FaultProxy, asked: list[ShuntResult]
) -> None:
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    with section_loop() as loop:
        for block in BLOCKS:
            if block.section != section or block.skip is not None:
                continue
            if block.lang == "python":
                run_python(block, namespace, fake_llm.base_url, loop)
            for cmd in read_commands(block) if block.lang == "bash" else []:
                if cmd.not_run is None:
                    run_command(cmd)
    if not any(b.section == section and b.lang == "python" for b in BLOCKS):
        return

    # An LLM the README configures wrongly (no key, a wrong address) falls back silently.
    failed = [r.error for r in asked if r.source != "llm"]
    assert not failed, f"README section {section!r}: LLM calls failed: {failed}"
    assert asked, (
        f"no snippet of README section {section!r} asked the LLM: the test no longer checks "
        "how the README configures it (see GATES and the policy in `workdir`)"
    )
    assert {r.label for r in asked} == {answer_for(section)}  # the fake's answer, parsed
    assert fake_llm.requests >= len(asked)


@pytest.mark.parametrize(
    "cmd", DATASHUNT_COMMANDS, ids=[f"README:{c.line}" for c in DATASHUNT_COMMANDS]
)
def test_command_parses(cmd: Command) -> None:
    if cmd.argv[1] == "llm-server":
        return  # its options belong to the server's own parser (see datashunt.cli.main)
    try:
        build_parser().parse_args(list(cmd.argv[1:]))
    except SystemExit as exc:  # argparse's way of reporting a bad option
        pytest.fail(f"README.md:{cmd.line}: `{cmd.text}` does not parse (exit {exc.code})")


NOT_RUN_ITEMS = [
    *(
        pytest.param(f"README.md:{b.line}: {b.lang} block: {b.skip}", id=f"README:{b.line}")
        for b in BLOCKS
        if b.skip is not None
    ),
    *(
        pytest.param(f"README.md:{c.line}: `{c.text}`: {c.not_run}", id=f"README:{c.line}")
        for c in COMMANDS
        if c.not_run is not None and c.block.skip is None
    ),
]


@pytest.mark.parametrize("why", NOT_RUN_ITEMS)
def test_not_run(why: str) -> None:
    """One skipped test per block or command that does not run, so that -ra lists each."""
    pytest.skip(why)


def test_few_blocks_are_skipped() -> None:
    skipped = [b for b in BLOCKS if b.skip is not None]
    assert len(skipped) <= MAX_SKIPPED, (
        f"{len(skipped)} README blocks are marked `readme-test: skip` (at most {MAX_SKIPPED}): "
        + ", ".join(f"line {b.line} ({b.skip})" for b in skipped)
    )
    langs = {b.lang for b in BLOCKS}
    assert langs <= {"python", "bash"}, f"README blocks in a language no test runs: {langs}"
    assert sum(b.lang == "python" and b.skip is None for b in BLOCKS) >= 5
    assert {"Quickstart", "LlamaIndex"} <= set(SECTIONS)


def test_reading_finds_sections_skip_marks_and_commands() -> None:
    text = (
        "# t\n## One\n```python\nx = 1\n```\n### Sub\n"
        "<!-- readme-test: skip (needs a hosted key) -->\n```bash\ndatashunt bench --a \\\n"
        "   --b 2  # slow\nmake demo\n```\n## Two\n```python\n## not a heading\n```\n"
    )
    one, two, three = read_blocks(text)
    assert (one.section, one.lang, one.code, one.line, one.skip) == (
        "One",
        "python",
        "x = 1\n",
        4,
        None,
    )
    assert (two.section, two.skip, two.line) == ("One", "needs a hosted key", 9)
    bench, make = read_commands(two)
    assert (bench.argv, bench.line, bench.not_run) == (
        ("datashunt", "bench", "--a", "--b", "2"),
        9,
        "needs a hosted key",
    )
    assert (make.argv, make.line, make.not_run) == (("make", "demo"), 11, NOT_DATASHUNT)
    assert (three.section, three.code) == ("Two", "## not a heading\n")
