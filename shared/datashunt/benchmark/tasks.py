"""What the benchmark measures: its methods, the prompt per data set, and the run's settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..prompts import PromptMode
from ..training import parse_target

__all__ = [
    "DEFAULT_RECIPE",
    "DS_MODES",
    "GATE_RECIPES",
    "GENERIC_TASK",
    "METHODS",
    "METHOD_NAMES",
    "TASKS",
    "BenchConfig",
    "TaskSpec",
    "task_for",
]

#: The gate trained for a bundled data set when ``--gate`` is not given:
#: ``(kind, epochs, max_length, lr)``. mr: one epoch of fine-tuning (0.826 on test, 9.5 min on
#: 2 loaded cores); on dev it ranks as well as 2 epochs at lr 5e-5 (mean dev routing accuracy
#: 0.897 against 0.894); the best mixture (``--gate A+B``, with the 2-epoch gate) beat it by
#: 0.09 points on dev, not worth a second fine-tune on a fresh machine.
#: isear: the embedding head (4.3 min; its fine-tune, 15 min in issue 18, would not leave the
#: whole ``--data mr,isear`` run under 20 min). See BENCHMARKS.md.
GATE_RECIPES: Mapping[str, tuple[str, int, int, float]] = {
    "mr": ("finetune", 1, 64, 8e-5),
    "isear": ("embedding", 1, 128, 5e-5),
}
#: The gate for any other data set.
DEFAULT_RECIPE: tuple[str, int, int, float] = ("embedding", 1, 128, 5e-5)

#: Methods in table order. ``ds-*`` are the shunt with a prompt mode; ``ds-plus`` adds Prompt
#: Transferring to soft and hard pruning (DS+); ``random`` and ``oracle`` route the same share of
#: inputs as ``ds-none`` to the LLM, at random and with hindsight.
METHODS = (
    "small",
    "llm",
    "ds-none",
    "ds-soft",
    "ds-hard",
    "ds-plus",
    "random",
    "oracle",
)
#: The shunt's prompt mode per ``ds-*`` method.
DS_MODES: Mapping[str, PromptMode] = {
    "ds-none": "none",
    "ds-soft": "soft",
    "ds-hard": "hard",
    "ds-plus": "both",
}
#: Each method's name in the report's tables and legends.
METHOD_NAMES = {
    "small": "small model alone",
    "llm": "LLM alone",
    "ds-none": "Data Shunt, no pruning",
    "ds-soft": "Data Shunt, soft pruning",
    "ds-hard": "Data Shunt, hard pruning",
    "ds-plus": "DS+ (soft + hard + transfer)",
    "random": "random router, same LLM rate",
    "oracle": "oracle router, same LLM rate",
}


@dataclass(frozen=True)
class TaskSpec:
    """How the LLM is asked about one data set.

    Attributes:
        template: the prompt (``str.format`` over the shunt's variables).
        noun: what an input is called in the soft hint ("review").
        synonyms: extra surface forms per label for reading the LLM's answer.

    Example:
        >>> TaskSpec("Label as {candidates}. {hint}Text: {text}\\nAnswer:", "text").noun
        'text'
    """

    template: str
    noun: str
    synonyms: Mapping[str, Sequence[str]] = field(default_factory=dict)


# Small models are sensitive to wording: task-specific instructions, input last, "Answer:" at
# the end (SmolLM2-135M: 0.90 on amazon-mds dev with the sentiment one, 0.75 with the generic).
_SENTIMENT = (
    "Classify the sentiment of this {noun} as {{candidates}}. {{hint}}Answer with one word.\n"
    "{title}: {{text}}\nAnswer:"
)
#: The prompt per bundled data set.
TASKS: dict[str, TaskSpec] = {
    "amazon-mds": TaskSpec(_SENTIMENT.format(noun="review", title="Review"), "review"),
    "sst2": TaskSpec(_SENTIMENT.format(noun="movie review", title="Review"), "movie review"),
    "mr": TaskSpec(_SENTIMENT.format(noun="movie review", title="Review"), "movie review"),
    "isear": TaskSpec(
        "Classify the emotion this person describes as one of: {candidates}. {hint}"
        "Answer with one word.\nText: {text}\nAnswer:",
        "text",
    ),
    "agnews": TaskSpec(
        "Classify the topic of this news article as one of: {candidates}. {hint}"
        "Answer with one word.\nArticle: {text}\nAnswer:",
        "article",
        {
            "Sci/Tech": ("science", "technology", "tech", "sci-tech", "scitech", "science/tech"),
            "Sports": ("sport",),
            "Business": ("economy", "finance", "business news"),
            "World": ("world news", "politics", "international"),
        },
    ),
}
#: The prompt for a data set without its own entry in :data:`TASKS`.
GENERIC_TASK = TaskSpec(
    "Classify this text as one of: {candidates}. {hint}Answer with one word.\nText: {text}\n"
    "Answer:",
    "text",
)


def task_for(name: str) -> TaskSpec:
    """The prompt for data set ``name``: its entry in :data:`TASKS`, else :data:`GENERIC_TASK`."""
    return TASKS.get(name, GENERIC_TASK)


@dataclass(frozen=True)
class BenchConfig:
    """What :func:`~datashunt.benchmark.run_bench` measures.

    Attributes:
        datasets: bundled names (``amazon-mds``, ``sst2``, ``agnews``); for your own data call
            :func:`~datashunt.benchmark.bench_dataset` with ``dev=`` and ``test=`` datasets and
            a gate.
        test_n: a fixed hash-ordered sample of the test split per data set (``None``: all).
        dev_n: calibration examples from dev (``None``: all).
        train_n: training examples for a gate trained here (the embedding kind, seconds).
        gates: data set -> gate directory; a data set without one gets an embedding gate
            trained on ``train_n`` examples and cached under ``cache_dir``.
        target: how δ is chosen on dev (``budget:0.3``, ``precision:0.95``).
        methods: which rows to produce (``small`` and ``llm`` are always computed).
        transfer_budget: DS+ keeps the most decisive sentences within this many gate tokens.
        concurrency: LLM calls in flight (1 for the local server, more for hosted endpoints).
        curve_points: call rates on the δ-sweep curve.
        cache_dir: where trained gates are kept.
        seed: sampling of the random router's tokens and of training subsets.

    Raises:
        ConfigError: for an unknown method, no data set, a sample under 2, or a bad target.

    Example:
        >>> BenchConfig(datasets=("sst2",), test_n=200).target
        'budget:0.3'
    """

    datasets: tuple[str, ...] = ("amazon-mds", "sst2", "agnews")
    test_n: int | None = 400
    dev_n: int | None = 1000
    train_n: int = 2000
    gates: Mapping[str, str] = field(default_factory=dict)
    target: str = "budget:0.3"
    methods: tuple[str, ...] = METHODS
    transfer_budget: int = 64
    concurrency: int = 1
    curve_points: int = 41
    cache_dir: str = ".cache/gates"
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown bench methods {unknown}; choose from {list(METHODS)}")
        if not self.datasets:
            raise ConfigError("no data sets to bench")
        for name in ("test_n", "dev_n"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ConfigError(f"{name} must be >= 2 (or None for all), got {v}")
        if self.train_n < 10 or self.concurrency < 1 or self.transfer_budget < 1:
            raise ConfigError("train_n must be >= 10, concurrency and transfer_budget >= 1")
        parse_target(self.target, llm_accuracy=0.0)  # validates the spec early
