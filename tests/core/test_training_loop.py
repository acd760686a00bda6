"""The one training loop: train-gate and 2CD step through it, with the results they had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datashunt import ConfigError, Dataset, Example, TrainConfig, train_gate
from datashunt.training import OptimConfig, StageData, TrainingLoop
from datashunt.training.distillation.distill_train import train_rounds
from datashunt.training.fitting.models import load_classifier, make_accelerator
from tests.conftest import WORDS

torch = pytest.importorskip("torch")


def _data(n: int = 20, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    ex = []
    for i in range(n):
        label = ("negative", "positive")[i % 2]
        kw = ("bad", "awful")[i % 2 == 1] if label == "negative" else ("good", "great")[i % 3 > 0]
        words = [str(w) for w in rng.choice(WORDS[20:], size=4)] + [kw]
        ex.append(Example(" ".join(words), label))
    return Dataset(tuple(ex), ("negative", "positive"))


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _old_finetune(train: Dataset, out: Path, backbone: Path, cfg: TrainConfig) -> None:
    """train-gate's loop as it was before the shared loop (copied, for the comparison)."""
    import transformers

    torch.manual_seed(cfg.seed)
    labels = list(train.labels)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(backbone), local_files_only=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(backbone),
        local_files_only=True,
        use_safetensors=True,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)},
    )
    texts, y = train.texts, np.array(train.y)
    rng = np.random.default_rng(cfg.seed)
    total = -(-len(texts) // cfg.batch_size) * cfg.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = transformers.get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    model.train()
    for _epoch in range(cfg.epochs):
        order = rng.permutation(len(texts))
        for start in range(0, len(texts), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            enc = tokenizer(
                [texts[i][: cfg.max_length * 16] for i in idx],
                padding=True,
                truncation=True,
                max_length=cfg.max_length,
                return_tensors="pt",
            )
            loss = model(**enc, labels=torch.tensor(y[idx], dtype=torch.long)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
    model.eval()
    model.save_pretrained(str(out))


def test_train_gate_gives_the_weights_of_the_old_loop(tiny_bert: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=2, lr=5e-3, batch_size=8, max_length=16, warmup_ratio=0.2)
    train = _data()
    train_gate(train, tmp_path / "new", backbone=tiny_bert, config=cfg, progress=False)
    _old_finetune(train, tmp_path / "old", tiny_bert, cfg)
    new, old = _weights(tmp_path / "new"), _weights(tmp_path / "old")
    assert new.keys() == old.keys()
    assert all(torch.equal(new[k], old[k]) for k in new)
    assert not torch.equal(new["classifier.weight"], _weights(tiny_bert)["classifier.weight"])


def _old_train_rounds(model: Any, tokenizer: Any, rounds: Any, acc: Any, **kw: Any) -> Any:
    """2CD's loop as it was before the shared loop (copied, for the comparison)."""
    functional = torch.nn.functional

    def collate(texts: Any, targets: Any) -> Any:
        def run(idx: list[int]) -> dict[str, Any]:
            enc = tokenizer(
                [texts[i][: kw["max_length"] * 16] for i in idx],
                padding=True,
                truncation=True,
                max_length=kw["max_length"],
                return_tensors="pt",
            )
            batch = dict(enc)
            batch["_idx"] = torch.tensor(idx, dtype=torch.long)
            batch["_target"] = torch.tensor(targets[idx], dtype=torch.float32)
            return batch

        return run

    opt = torch.optim.AdamW(model.parameters(), lr=kw["lr"], weight_decay=kw["weight_decay"])
    model, opt = acc.prepare(model, opt)
    for r, stages in enumerate(rounds, 1):
        for s, (_name, data) in enumerate(stages):
            gen = torch.Generator().manual_seed(kw["seed"] * 1_000 + r * 10 + s)
            loader = torch.utils.data.DataLoader(
                list(range(len(data))),
                batch_size=kw["batch_size"],
                shuffle=True,
                generator=gen,
                collate_fn=collate(data.texts, data.targets),
            )
            loader = acc.prepare_data_loader(loader)
            t = data.temperature
            model.train()
            for _epoch in range(kw["epochs"]):
                for batch in loader:
                    batch.pop("_idx")
                    target = batch.pop("_target")
                    logits = model(**batch).logits.float()
                    log_p = functional.log_softmax(logits / t, dim=-1)
                    loss = functional.kl_div(log_p, target, reduction="batchmean") * t
                    acc.backward(loss)
                    acc.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad()
    model.eval()
    return acc.unwrap_model(model)


def test_2cd_rounds_give_the_weights_of_the_old_loop(tiny_bert: Path) -> None:
    pytest.importorskip("accelerate")
    acc = make_accelerator()  # as the Distiller makes it: from the environment
    rng = np.random.default_rng(0)
    texts = tuple(_data(12).texts)
    soft = rng.dirichlet([1.0, 1.0], size=len(texts))
    one_hot = np.eye(2)[rng.integers(0, 2, size=len(texts))]
    stages = [
        ("stage1-llm", StageData(texts, soft, 0.5)),
        ("stage2-keep", StageData(texts, one_hot, 2.0)),
    ]
    rounds = [stages, stages]
    kw = {
        "lr": 3e-3,
        "weight_decay": 0.01,
        "epochs": 2,
        "batch_size": 5,
        "max_length": 16,
        "seed": 3,
    }
    new_model, tok = load_classifier(tiny_bert)
    torch.manual_seed(0)
    new, losses = train_rounds(new_model, tok, rounds, accelerator=acc, progress=False, **kw)
    old_model, _ = load_classifier(tiny_bert)
    torch.manual_seed(0)
    old = _old_train_rounds(old_model, tok, rounds, acc, **kw)
    new_sd, old_sd = new.state_dict(), old.state_dict()
    assert all(torch.equal(new_sd[k], old_sd[k]) for k in new_sd)
    assert [(x.round, x.stage, x.steps) for x in losses] == [
        (1, "stage1-llm", 6), (1, "stage2-keep", 6), (2, "stage1-llm", 6), (2, "stage2-keep", 6)
    ]  # fmt: skip
    assert all(np.isfinite(x.mean_loss) and x.mean_loss >= 0 for x in losses)


def _linear_batches(n: int) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(4, 3, generator=g), "y": torch.randn(4, 1, generator=g)}] * n


def _mse(model: Any, batch: Any) -> Any:
    return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])


def test_phases_share_one_optimiser_and_the_loss_goes_down() -> None:
    torch.manual_seed(0)
    loop = TrainingLoop(torch.nn.Linear(3, 1), OptimConfig(lr=0.05, weight_decay=0.0))
    first = loop.fit(_linear_batches(5), _mse, epochs=2)
    second = loop.fit(_linear_batches(5), _mse, epochs=1)
    assert (first.steps, second.steps) == (10, 5)
    assert second.mean_loss < first.mean_loss
    state = loop.optimizer.state[next(iter(loop.model.parameters()))]
    assert int(state["step"]) == 15  # AdamW's moments carried over between the phases
    model = loop.finish()
    assert not model.training


def test_warm_up_then_linear_decay() -> None:
    loop = TrainingLoop(torch.nn.Linear(3, 1), OptimConfig(lr=1.0, warmup_ratio=0.5), total_steps=4)
    seen = []
    for _ in range(4):
        loop.fit(_linear_batches(1), _mse)
        seen.append(loop.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([0.5, 1.0, 0.5, 0.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": 1e-3, "warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\)"),
        ({"lr": 1e-3, "weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"lr": 1e-3, "max_grad_norm": 0.0}, "max_grad_norm must be > 0"),
    ],
)
def test_optim_config_is_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OptimConfig(**kwargs)


def test_a_schedule_needs_the_step_count() -> None:
    with pytest.raises(ConfigError, match="total_steps"):
        TrainingLoop(torch.nn.Linear(3, 1), OptimConfig(lr=1e-3, warmup_ratio=0.1))
