"""End to end: an image gate trained on upscaled scikit-learn digits (made offline), in front of a
fake multimodal chat model that answers only when it received the image itself."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from datashunt import CallStore, ShuntPolicy
from datashunt.gates import HFImageGate
from datashunt.images import IMAGE_PLACEHOLDER, image_input, image_part
from datashunt.training.fitting.image import ImageTrainConfig, digits_folder, train_image_gate
from langchain_datashunt import DataShuntRouter, DataShuntRunnable
from tests.support.lc_fakes import CountingChat

TEMPLATE_OK = "Which digit is this image? Options: {candidates}. {hint}Answer with the digit."


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small image gate trained on 8 digits per class, and 5 unseen test images per class."""
    root = tmp_path_factory.mktemp("digits")
    digits_folder(root / "train", per_class=8, size=16)
    test = digits_folder(root / "test", per_class=5, size=16, offset=8)
    cfg = ImageTrainConfig(
        epochs=30, image_size=16, patch_size=4, hidden_size=32, lr=3e-3, batch_size=16, threads=1
    )
    report = train_image_gate(root / "train", root / "gate", config=cfg, progress=False)
    gold = {}
    for p in sorted(test.glob("*/*.png")):
        gold[hashlib.sha256(p.read_bytes()).hexdigest()] = p.parent.name
    return {"gate": HFImageGate(report.out_dir), "test": test, "gold": gold, "report": report}


def _images_in(message: BaseMessage) -> list[bytes]:
    blocks = message.content if isinstance(message.content, list) else []
    return [
        base64.b64decode(b["base64"])
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "image"
    ]


class MultimodalOracle(CountingChat):
    """Answers the true digit of the image it received; without exactly one image, an error."""

    gold: dict[str, str] = {}

    def _text(self, messages: list[BaseMessage]) -> str:
        super()._text(messages)
        humans = [m for m in messages if isinstance(m, HumanMessage)]
        images = [im for m in humans for im in _images_in(m)]
        if len(images) != 1:
            raise AssertionError(f"expected one image in the request, got {len(images)}")
        assert IMAGE_PLACEHOLDER in str(humans[-1].text)  # the text part names it, no bytes
        return self.gold[hashlib.sha256(images[0]).hexdigest()]


def test_uncertain_images_go_to_the_multimodal_model(digits: dict[str, Any], tmp_path: Path):
    gate: HFImageGate = digits["gate"]
    test: Path = digits["test"]
    paths = sorted(test.glob("*/*.png"))
    truth = [p.parent.name for p in paths]
    gate_pred = [gate.labels[i] for i in gate.predict_proba(paths).argmax(axis=1)]
    gate_acc = sum(a == b for a, b in zip(gate_pred, truth, strict=True)) / len(paths)
    assert gate_acc > 0.2  # it learned something (10 classes: chance is 0.1)

    llm = MultimodalOracle(gold=digits["gold"])
    store = tmp_path / "calls.db"
    shunt = DataShuntRunnable.from_gate(
        gate=gate,
        llm=llm,
        policy=ShuntPolicy(labels=gate.labels, threshold=0.5),
        prompt_mode="both",
        noun="image",
        store=store,
    )
    outs = shunt.batch([p.read_bytes() for p in paths])
    asked = [o for o in outs if o.route == "llm"]
    assert asked and len(asked) < len(paths) and llm.calls == len(asked)
    assert all(o.source == "llm" for o in asked)
    acc = sum(o.label == t for o, t in zip(outs, truth, strict=True)) / len(paths)
    assert acc > gate_acc  # the oracle fixes what it is asked about

    records = list(CallStore(store).iter())
    assert len(records) == len(paths)
    assert all(r.input_text and r.input_text.startswith("[image image/png") for r in records)
    llm_recs = [r for r in records if r.route == "llm"]
    assert all(r.messages and r.messages[-1]["images"][0]["bytes"] > 0 for r in llm_recs)
    raw = store.read_bytes()
    assert base64.b64encode(paths[0].read_bytes())[:64] not in raw


async def test_pil_paths_and_messages_async_and_stream(digits: dict[str, Any]) -> None:
    from PIL import Image

    gate: HFImageGate = digits["gate"]
    paths = sorted(digits["test"].glob("*/*.png"))
    llm = MultimodalOracle(gold=digits["gold"])
    shunt = DataShuntRunnable.from_gate(
        gate=gate, llm=llm, policy=ShuntPolicy(labels=gate.labels, threshold=1.0)
    )
    out = await shunt.ainvoke(Image.open(paths[0]))
    assert out.route == "llm" and out.label == paths[0].parent.name
    assert shunt.invoke({"text": paths[1]}).label == paths[1].parent.name
    part = image_part(image_input(paths[2]))
    msg = HumanMessage(
        content=[
            {"type": "text", "text": "what digit?"},
            {"type": "image", "base64": part.base64, "mime_type": part.mime},
        ]
    )
    assert shunt.invoke([msg]).label == paths[2].parent.name
    chunks = list(shunt.stream(paths[3].read_bytes()))
    assert chunks and llm.calls == 4


def test_router_sends_the_image_to_the_chooser(digits: dict[str, Any]) -> None:
    gate: HFImageGate = digits["gate"]
    paths = sorted(digits["test"].glob("*/*.png"))
    llm = MultimodalOracle(gold=digits["gold"])
    destinations = {lab: RunnableLambda(lambda x, lab=lab: f"to {lab}") for lab in gate.labels}
    router = DataShuntRouter.from_gate(
        gate=gate,
        policy=ShuntPolicy(labels=gate.labels, threshold=1.0),
        destinations=destinations,
        llm=llm,
    )
    data = image_input(paths[0])
    assert router.invoke({"text": data}) == f"to {paths[0].parent.name}"
    assert llm.calls == 1
