"""The image gate: a tiny random ViT built in the test, every input form, the model-dir rules,
the LLM route's image part, the store (hash and size, never bytes), calibration, the CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from datashunt import (
    Budget,
    CallStore,
    Dataset,
    Example,
    GateError,
    InputError,
    LLMReply,
    LLMRequest,
    ModelNotFoundError,
    Shunt,
    ShuntPolicy,
    calibrate,
    load_gate,
)
from datashunt.adapters import Message
from datashunt.gates import HFImageGate
from datashunt.images import (
    IMAGE_PLACEHOLDER,
    describe_input,
    image_input,
    image_part,
    is_image_input,
)
from datashunt.llm import OpenAICompatLLM
from datashunt.types import messages_text
from tests.support.images import build_tiny_vit, png_bytes, random_image


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    return build_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="module")
def gate(tiny_vit: Path) -> HFImageGate:
    return HFImageGate(tiny_vit)


def test_every_input_form_gives_the_same_probabilities(gate: HFImageGate, tmp_path: Path) -> None:
    data = png_bytes(1)
    path = tmp_path / "one.png"
    path.write_bytes(data)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    from PIL import Image

    pil = Image.open(path)
    probs = gate.predict_proba([str(path), path, data, url, pil])
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    for row in probs[1:]:
        np.testing.assert_allclose(row, probs[0], atol=1e-6)
    other = gate.predict_proba([png_bytes(2)])[0]
    assert not np.allclose(other, probs[0])  # the pixels matter


def test_load_gate_knows_an_image_model(tiny_vit: Path) -> None:
    loaded = load_gate(tiny_vit, temperature=2.0)
    assert isinstance(loaded, HFImageGate)
    assert loaded.labels == ("cat", "dog", "bird") and loaded.temperature == 2.0


def test_without_a_processor_config_pixels_are_resized_and_scaled(tmp_path: Path) -> None:
    bare = HFImageGate(build_tiny_vit(tmp_path / "bare", processor=False))
    assert bare.processor is None
    pixels = bare.pixels([random_image(0, size=40)])
    assert tuple(pixels.shape) == (1, 3, 16, 16)
    assert float(pixels.min()) >= -1.0 and float(pixels.max()) <= 1.0


def test_the_rules_of_hf_gate(tiny_vit: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model directory"):
        HFImageGate(tmp_path / "missing")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_vit / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelNotFoundError, match="only pickle weights"):
        HFImageGate(pickled)
    remote = tmp_path / "remote"
    remote.mkdir()
    for f in tiny_vit.iterdir():
        (remote / f.name).write_bytes(f.read_bytes())
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "evil.Model"}
    (remote / "config.json").write_text(json.dumps(config))
    with pytest.raises(GateError, match=r"evil\.py.*trust_remote_code=True"):
        HFImageGate(remote)


def test_inputs_that_are_not_images_say_what_to_pass(gate: HFImageGate, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input 1 is not an image: no file at"):
        gate.predict_proba([png_bytes(0), str(tmp_path / "nope.png")])
    with pytest.raises(InputError, match="input 0 could not be read as an image"):
        gate.predict_proba([b"plain bytes, no image"])
    with pytest.raises(InputError, match="invalid base64"):
        gate.predict_proba(["data:image/png;base64,@@@"])
    with pytest.raises(InputError, match="got a single string"):
        gate.predict_proba("one.png")
    with pytest.raises(InputError, match="is a int, not an image"):
        gate.predict_proba([3])


def test_image_parts_hash_and_size_never_bytes() -> None:
    data = png_bytes(3)
    part = image_part(image_input(data))
    assert part.size == len(data) and part.mime == "image/png"
    msg = Message("user", "what is this?", (part,))
    record = msg.to_json()
    assert record["images"] == [{"mime": "image/png", "sha256": part.sha256, "bytes": len(data)}]
    assert base64.b64encode(data).decode() not in json.dumps(record)
    wire = msg.to_wire()
    assert wire["content"][0] == {"type": "text", "text": "what is this?"}
    assert wire["content"][1]["image_url"]["url"] == part.data_url
    assert messages_text([msg]) == f"what is this? {part.describe()}"
    assert Message("user", "hi").to_wire() == {"role": "user", "content": "hi"}
    assert describe_input("plain text") == "plain text"
    assert describe_input(part.data_url).startswith("[image image/png sha256:")


def test_other_formats_are_sent_as_png() -> None:
    import io

    buf = io.BytesIO()
    random_image(4).save(buf, format="BMP")  # type: ignore[attr-defined]
    url = image_input(buf.getvalue())
    assert is_image_input(url) and url.startswith("data:image/png;base64,")


def _confident_and_uncertain(gate: HFImageGate) -> tuple[list[bytes], float]:
    """Images and a δ between their confidences, so some go each way."""
    images = [png_bytes(i) for i in range(8)]
    conf = gate.predict_proba(images).max(axis=1)
    return images, float(np.median(conf))


def test_shunt_sends_the_image_and_records_its_hash(gate: HFImageGate, tmp_path: Path) -> None:
    images, delta = _confident_and_uncertain(gate)
    seen: list[LLMRequest] = []

    def llm(request: LLMRequest) -> LLMReply:
        seen.append(request)
        return LLMReply("dog", model="vision-fake")

    store = tmp_path / "calls.db"
    shunt = Shunt(
        gate,
        ShuntPolicy(labels=gate.labels, threshold=delta),
        llm=llm,
        store=store,
        noun="image",
        prompt_mode="both",
    )
    results = shunt.run_batch(images)
    asked = [r for r in results if r.route == "llm"]
    assert asked and len(asked) < len(images) and len(seen) == len(asked)
    assert all(r.label == "dog" and r.source == "llm" for r in asked)
    assert all(is_image_input(req.text) for req in seen)
    assert IMAGE_PLACEHOLDER in seen[0].prompt and "base64" not in seen[0].prompt
    records = list(CallStore(store).iter())
    assert len(records) == len(images)
    raw = store.read_bytes()
    for data in images:
        assert base64.b64encode(data)[:64] not in raw  # never the bytes, in any column
    llm_recs = [r for r in records if r.route == "llm"]
    for rec in llm_recs:
        assert rec.input_text is not None and rec.input_text.startswith("[image image/png")
        assert rec.messages is not None
        images_meta = rec.messages[0]["images"]
        assert images_meta[0]["sha256"] in {image_part(image_input(d)).sha256 for d in images}
        assert rec.prompt is not None and "sha256:" in rec.prompt


def test_openai_compatible_client_sends_an_image_url_part() -> None:
    part = image_part(image_input(png_bytes(5)))
    body = OpenAICompatLLM("http://127.0.0.1:9/v1", "gpt-4o-mini").payload(
        [Message("user", "Classify", (part,))]
    )
    content = body["messages"][0]["content"]
    assert content[1] == {"type": "image_url", "image_url": {"url": part.data_url}}


def test_calibration_on_image_paths(gate: HFImageGate, tmp_path: Path) -> None:
    examples = []
    for i in range(40):
        p = tmp_path / f"{i}.png"
        p.write_bytes(png_bytes(100 + i))
        examples.append(Example(str(p), gate.labels[i % 3]))
    dev = Dataset(tuple(examples), gate.labels)
    report = calibrate(gate, dev, Budget(0.5), min_rows=10)
    assert 0.0 <= report.policy.threshold <= 1.0
    assert report.policy.labels == gate.labels


def test_cli_trains_an_image_gate_from_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datashunt.cli import main
    from datashunt.training.fitting.image import digits_folder

    digits_folder(tmp_path / "train", per_class=3, size=8)
    digits_folder(tmp_path / "dev", per_class=2, size=8, offset=3)
    out = tmp_path / "gate"
    args = ["train-gate", "--kind", "image", "--data", str(tmp_path / "train"), "--out", str(out)]
    args += ["--dev-data", str(tmp_path / "dev"), "--epochs", "1", "--image-size", "8"]
    assert main([*args, "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "training an image gate on 30 images" in printed and "dev accuracy" in printed
    gate = load_gate(out)
    assert isinstance(gate, HFImageGate) and gate.labels == tuple(str(d) for d in range(10))
    assert (
        main(["train-gate", "--kind", "image", "--data", str(tmp_path / "no"), "--out", str(out)])
        == 2
    )
    assert "no image folder at" in capsys.readouterr().err


def test_an_image_is_not_held_to_the_text_length_limit(gate: HFImageGate) -> None:
    big = image_input(png_bytes(9, size=300))
    shunt = Shunt(gate, ShuntPolicy(labels=gate.labels, threshold=0.0), max_chars=1000)
    assert len(big) > 1000
    assert shunt.run(big).route == "small"
    with pytest.raises(InputError, match="over the limit"):
        shunt.decide(["x" * 1001])
