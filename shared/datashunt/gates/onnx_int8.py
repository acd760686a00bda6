"""The int8 recipe of the ONNX gate (``HFGate(..., backend="onnx", quantize="int8")``).

Each step was measured on all-MiniLM-L6-v2 at 2 threads (BENCHMARKS.md, issue 26):

1. ONNX Runtime's BERT optimiser (what Optimum's ``ORTOptimizer`` runs): fused attention,
   embedding LayerNorm, bias + GELU in its tanh form (``FastGelu``: 1.0 ms against 1.5 ms for
   the erf form on one [32, 46, 1536] input). Not the SkipLayerNorm fusion: ONNX Runtime
   1.32's CPU kernel is about 3x slower than the Add and LayerNormalization it replaces.
2. Outlier channels kept in fp32 (LLM.int8()'s decomposition, Dettmers et al., 2022): the
   FFN output projections' inputs, after the GELU, hold a channel or two far wider than the
   rest (MiniLM's first layer: 24 against a median of 1.3), which one int8 scale per call
   cannot hold without losing the others. A channel whose peak exceeds 8x the median
   channel's goes through a GELU and an fp32 MatMul of its own (one row of the weights); the
   int8 MatMul takes the rest (the big GELU's bias is -1e4 on the outliers: it gives 0
   there). The peaks come from random sequences of the tokenizer's own vocabulary: the
   outlier channels are the model's, not the data's (24.3 on random tokens, 24.5 on reviews
   and sentences), so no data is needed to quantise a gate.
   (SmoothQuant's rescaling, tried first, moved the range into the weights and changed 2-4x
   more answers.)
3. ``quantize_dynamic`` (what Optimum's ``ORTQuantizer`` runs) of the fused attention's and
   every MatMul's weights to int8 per output channel; activations are quantised per call
   (unsigned 8-bit: what the VNNI and AMX kernels take). The embeddings stay fp32 (a lookup:
   int8 saves no time there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RECIPE",
    "activation_peaks",
    "calibration_batches",
    "fuse",
    "quantize_int8",
    "split_outlier_channels",
]

#: In the int8 file's stamp: a file made by another recipe is made again.
RECIPE = "fused-fastgelu-fp32-outlier-channels-biased-off-per-channel"
_GELUS = ("Gelu", "BiasGelu", "FastGelu")
_OUTLIER = 8.0  # an input channel whose peak is over 8x the median channel's is an outlier
_CALIBRATION = (8, 16)  # batches, texts per batch
_MAX_TOKENS = 128  # per calibration text, or fewer if the model takes fewer


def quantize_int8(
    fp32: Path,
    out: str,
    tokenizer: Any,
    *,
    num_heads: int = 0,
    hidden_size: int = 0,
    max_tokens: int = _MAX_TOKENS,
) -> None:
    """Optimise the fp32 export ``fp32``, split its outlier channels off and quantise it into
    ``out`` (see the module).

    Args:
        fp32: the exported fp32 model.
        out: where the int8 model is written.
        tokenizer: the gate's tokenizer (its vocabulary gives the calibration inputs).
        num_heads, hidden_size: the model's; 0 lets the optimiser read them from the graph.
        max_tokens: the longest calibration input (at most the model's positions).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fused = fuse(fp32, num_heads=num_heads, hidden_size=hidden_size)
    fp32_nodes = split_outlier_channels(fused, calibration_batches(tokenizer, max_tokens))
    quantize_dynamic(
        fused,
        out,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Attention"],
        nodes_to_exclude=fp32_nodes,
        # shape inference leaves some exported outputs untyped; they are float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def fuse(fp32: Path, *, num_heads: int = 0, hidden_size: int = 0) -> Any:
    """The fp32 export with ONNX Runtime's BERT fusions (step 1 of the module), as a
    ``ModelProto``."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False  # see _SLOW_FUSIONS in onnx.py
    options.enable_bias_skip_layer_norm = False
    options.enable_gelu_approximation = True
    return optimize_model(
        str(fp32),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
    ).model


def calibration_batches(
    tokenizer: Any, max_tokens: int = _MAX_TOKENS, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Tokenised batches of random sequences of the tokenizer's (non-special) vocabulary, of
    random lengths: what the activation peaks are measured on."""
    batches, per_batch = _CALIBRATION
    max_tokens = min(max_tokens, _MAX_TOKENS)
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    vocab = np.asarray([i for i in range(len(tokenizer)) if i not in special])
    out = []
    for _ in range(batches):
        lengths = rng.integers(2, max(3, max_tokens - 2), per_batch)
        texts = [tokenizer.decode(rng.choice(vocab, int(n)).tolist()) for n in lengths]
        enc = tokenizer(
            texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="np"
        )
        out.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
    return out


def split_outlier_channels(model: Any, batches: list[dict[str, np.ndarray]]) -> list[str]:
    """Split, in place, every MatMul that reads a biased GELU's output (the FFN output
    projections of an optimised BERT graph: ``FastGelu``/``BiasGelu``) whose input has outlier
    channels: those go through a GELU and an fp32 MatMul of their own, the rest to the int8
    one. Returns the names of the fp32 MatMuls (to keep out of the quantisation).

    The int8 MatMul must see the outliers as zeros: the big GELU's bias is set to -1e4 on
    those channels, which makes its output 0 there (a ``Mul`` by a 0/1 mask, the first
    version, gave the same logits to the bit, at the same measured speed, with one more
    operator per layer)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    gelus = {
        n.output[0]: n
        for n in graph.node
        if n.op_type in _GELUS and len(n.input) > 1 and n.input[1] in inits
    }
    matmuls = [
        n
        for n in graph.node
        if n.op_type == "MatMul" and n.input[0] in gelus and n.input[1] in inits
    ]
    peaks = activation_peaks(model, [n.input[0] for n in matmuls], batches) if matmuls else {}
    kept = []
    for node in matmuls:
        peak = peaks[node.input[0]]
        idx = np.flatnonzero(peak > _OUTLIER * np.median(peak))
        if idx.size == 0:
            continue
        gelu = gelus[node.input[0]]
        weight = numpy_helper.to_array(inits[node.input[1]])  # [in, out]
        bias = numpy_helper.to_array(inits[gelu.input[1]])
        off = bias.copy()
        off[idx] = -1e4  # GELU(-1e4 + x) is 0 for any x the model meets
        name, y = node.name + "_outliers", node.output[0]
        graph.initializer.extend(
            [
                numpy_helper.from_array(idx.astype(np.int64), name + "_index"),
                numpy_helper.from_array(weight[idx], name + "_weight"),
                numpy_helper.from_array(bias[idx], name + "_bias"),
                numpy_helper.from_array(off, name + "_bias_off"),
            ]
        )
        gelu.input[1] = name + "_bias_off"
        node.output[0] = name + "_int8"
        side = [  # the outliers' own GELU on their pre-activations, then their fp32 MatMul
            helper.make_node(
                "Gather",
                [gelu.input[0], name + "_index"],
                [name + "_pre"],
                axis=-1,
                name=name + "_pick",
            ),
            helper.make_node(
                gelu.op_type,
                [name + "_pre", name + "_bias"],
                [name + "_x"],
                domain=gelu.domain,
                name=name + "_gelu",
            ),
            helper.make_node(
                "MatMul", [name + "_x", name + "_weight"], [name + "_fp32"], name=name
            ),
        ]
        at = list(graph.node).index(node)
        for offset, extra in enumerate(side):
            graph.node.insert(at + offset, extra)
        add = helper.make_node("Add", [name + "_int8", name + "_fp32"], [y], name=name + "_sum")
        graph.node.insert(at + len(side) + 1, add)  # after the int8 MatMul
        kept.append(name)
    return kept


def activation_peaks(
    model: Any, names: list[str], batches: list[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Per channel (last axis), the largest magnitude each named tensor takes on the real
    (unpadded) tokens of ``batches``: ``model`` run in ONNX Runtime with them as outputs."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    peaks: dict[str, np.ndarray] = {}
    for batch in batches:
        real = batch["attention_mask"].astype(bool)
        values = session.run(names, {k: batch[k] for k in inputs})
        for name, value in zip(names, values, strict=True):
            top = np.abs(np.asarray(value)[real]).max(axis=0)
            peaks[name] = np.maximum(peaks[name], top) if name in peaks else top
    return peaks
