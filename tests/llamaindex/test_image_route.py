"""The LlamaIndex components with an image gate: the image reaches the LLM as an ImageBlock,
once, and the store records its hash and size."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock

from datashunt import CallStore, Shunt, ShuntPolicy
from datashunt.gates import HFImageGate
from datashunt.images import image_input, image_part
from llamaindex_datashunt import DataShuntLLM
from llamaindex_datashunt._runner import LlamaIndexCall, ShuntRunner
from tests.support.images import build_tiny_vit, png_bytes
from tests.support.llamaindex_fakes import ScriptedLLM, llamaindex_sandbox

__all__ = ["llamaindex_sandbox"]  # the autouse fixture: mock Settings, no handler left behind


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> HFImageGate:
    return HFImageGate(build_tiny_vit(tmp_path_factory.mktemp("vit")))


def _image_blocks(messages: list[ChatMessage]) -> list[ImageBlock]:
    return [b for m in messages for b in m.blocks if isinstance(b, ImageBlock)]


def test_shunt_runner_sends_an_image_block(gate: HFImageGate, tmp_path: Path) -> None:
    store = tmp_path / "calls.db"
    shunt = Shunt(gate, ShuntPolicy(labels=gate.labels, threshold=1.0), store=store)
    llm = ScriptedLLM(answer="bird", chat_model=False)  # a completion model still gets the image
    data = png_bytes(7)
    (item,) = ShuntRunner(shunt, ScriptedLLM()).plan(image_input(data)).decided
    decision, request = item.decision, item.request
    assert request is not None and decision.route == "llm"
    result = shunt.ask(request, LlamaIndexCall(llm))
    assert result.label == "bird" and result.source == "llm"
    (sent,) = llm.messages
    (block,) = _image_blocks(sent)
    assert block.resolve_image().read() == data
    (rec,) = list(CallStore(store).iter())
    assert rec.messages is not None
    assert rec.messages[0]["images"][0]["sha256"] == image_part(image_input(data)).sha256


async def test_datashunt_llm_classifies_the_image_in_the_message(gate: HFImageGate) -> None:
    shunt = Shunt(gate, ShuntPolicy(labels=gate.labels, threshold=1.0))
    inner = ScriptedLLM(answer="cat")
    llm = DataShuntLLM(llm=inner, shunt=shunt)
    data = png_bytes(8)
    message = ChatMessage(
        role=MessageRole.USER,
        blocks=[TextBlock(text="what animal?"), ImageBlock(image=data, image_mimetype="image/png")],
    )
    response = llm.chat([message])
    assert response.message.content == "cat"
    assert response.additional_kwargs["datashunt"]["route"] == "llm"
    assert len(_image_blocks(inner.messages[0])) == 1  # the caller's image, not a second copy
    assert (await llm.achat([message])).message.content == "cat"
    assert gate.predict_proba([data]).shape == (1, 3)


async def test_workflow_sends_an_image_input_as_an_image_block(gate: HFImageGate) -> None:
    from llamaindex_datashunt import DataShuntWorkflow

    shunt = Shunt(gate, ShuntPolicy(labels=gate.labels, threshold=1.0))
    llm = ScriptedLLM(answer="dog")
    data = png_bytes(11)
    result = await DataShuntWorkflow(shunt, llm, timeout=30).run(text=image_input(data))
    assert result.label == "dog"
    (block,) = _image_blocks(llm.messages[0])
    assert block.resolve_image().read() == data
