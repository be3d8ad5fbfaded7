"""Does an ONNX graph use only what TensorRT 10.3's ONNX parser accepts? (``aura export --check-trt``)

TensorRT cannot be installed on the development machines, so this checks what can be checked without it:
op types, the dtypes each op is fed and the attribute / input forms the parser insists on. It is
conservative: a graph that passes can still fail in TensorRT for reasons only the builder sees (shapes, a
kernel missing on the device), but every rule below is one the parser states. Rules, with their source:

Source: onnx/onnx-tensorrt ``docs/operators.md`` at tag release/10.1-GA (commit 96e7811; its header reads
"TensorRT 10.0 supports ... opset 9 to opset 20"), the newest 10.x table at or below 10.3 that we could
read. ``OPS`` equals that table's supported ops and type sets (checked by parsing it). The 10.15 table
gives the same types for the 37 ops our two graphs use but Pow (10.15 adds INT32/INT64; ours is FP32), and
is looser in forms (Slice and Pad ``axes`` need not be initializers, Squeeze/Unsqueeze ``axes`` need only be
"resolvable to a constant"): the stricter 10.1 forms are kept.

- model: IR version <= 10 (the parser bundles ONNX 1.16.0, IR 10; README of release/10.1-GA) and an
  ``ai.onnx`` opset in 9..20;
- op types: only ops the table marks supported (``OPS``); a node of another domain must be a model-local
  function (its body is checked) -- anything else needs a TensorRT plugin;
- dtypes: the table's per-op type set, applied to the op's data inputs (``_typed_inputs``); graph inputs and
  outputs must have a dtype the parser converts (``IO_DTYPES``; DOUBLE is rejected here because the parser
  silently binds it as FP32); UINT8 only at the network boundary: a UINT8 tensor may feed only Cast;
- inputs that must be build-time constants (``CONST_INPUTS``): Reduce*/Squeeze ``axes``, Unsqueeze ``axes``,
  Slice/Pad ``axes``, CumSum ``axis``, Dropout ``training_mode``, OneHot ``depth``, TopK ``K``. The parser
  treats exactly two things as weights: initializers and Constant outputs (its Identity importer turns
  weights into a tensor), so anything else is a problem; when the value is computed from constants only the
  message says so (constant folding, e.g. onnxscript's optimizer, would fix it) and otherwise names the
  runtime input it depends on;
- no reductions of BOOL or UINT8 (the parser's reduce helper rejects both);
- ``cast_uint8_inputs`` is the one export fix: it moves the Cast of UINT8 graph inputs up to the inputs
  (torch's exporter keeps uint8 images through Concat/Transpose, which TensorRT rejects), bit-identically.
- attribute forms: pooling 2D/3D with unit dilations and no MaxPool ``Indices``; LayerNormalization only
  output Y; TopK ``sorted`` = 1 and K < 3840; ScatterND without ``reduction``; Resize's supported modes;
  Constant without sparse or string values; LSTM ``input_forget`` = ``layout`` = 0; Dropout not training.
"""

from __future__ import annotations

import os
from collections import Counter

import onnx
from onnx import TensorProto as T

SOURCE = "onnx-tensorrt docs/operators.md, release/10.1-GA (TensorRT 10.x table, opset 9-20)"
OPSET_MIN, OPSET_MAX, IR_MAX = 9, 20, 10
# network input/output dtypes: what the parser's convertDtype maps, less DOUBLE (see the module doc)
IO_DTYPES = frozenset({T.FLOAT, T.FLOAT16, T.BFLOAT16, T.INT8, T.UINT8, T.INT32, T.INT64, T.BOOL}) | {
    T.FLOAT8E4M3FN,
    T.INT4,
}

F = frozenset({T.FLOAT, T.FLOAT16, T.BFLOAT16})
F2 = frozenset({T.FLOAT, T.FLOAT16})
FI = F | {T.INT32, T.INT64}
FIB = FI | {T.BOOL}
B = frozenset({T.BOOL})
CAST = FIB | {T.UINT8}
UINT8_RULE = "network input/output feeding a Cast"

# op -> dtypes it accepts (the 10.1-GA table's "Supported Types" of every op it marks "Y")
OPS: dict[str, frozenset] = {
    **dict.fromkeys("Acos Acosh Asin Asinh Atan Atanh AveragePool BatchNormalization Ceil Celu Clip Conv "
                    "ConvTranspose Cos Cosh CumSum Dropout Einsum Elu Erf Exp Floor Gemm GlobalAveragePool "
                    "GlobalLpPool GlobalMaxPool GroupNormalization GRU HardSigmoid HardSwish Hardmax "
                    "ImageScaler InstanceNormalization IsInf LayerNormalization LeakyRelu Log LogSoftmax LRN "
                    "LSTM LpNormalization LpPool MatMul MaxPool MeanVarianceNormalization ParametricSoftplus "
                    "Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike "
                    "Reciprocal Resize RNN Round ScaledTanh Scan Selu Sigmoid Sin Sinh Softmax Softplus "
                    "Softsign Sqrt Tan Tanh ThresholdedRelu Upsample".split(), F),
    **dict.fromkeys("Abs Add ArgMax ArgMin DepthToSpace Div Equal Greater GreaterOrEqual IsNaN Less "
                    "LessOrEqual Max Min Mod Mul Neg Pad Range ReduceL1 ReduceL2 ReduceLogSum "
                    "ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare "
                    "Relu Scatter ScatterElements ScatterND Shrink Sign SpaceToDepth Sub Sum "
                    "TopK".split(), FI),
    **dict.fromkeys("Concat Constant ConstantOfShape Expand EyeLike Flatten Gather GatherElements GatherND "
                    "Identity If Loop OneHot Reshape ReverseSequence Shape Size Slice Split Squeeze Tile "
                    "Transpose Trilu Unsqueeze Where".split(), FIB),
    **dict.fromkeys("DeformConv GridSample Mish NonMaxSuppression NonZero RoiAlign".split(), F2),
    **dict.fromkeys("And Not Or Xor".split(), B),
    "Cast": CAST, "CastLike": CAST,
    "DequantizeLinear": frozenset({T.INT8, T.FLOAT8E4M3FN, T.INT4}),
    "Gelu": FI | {T.INT8},
    "Mean": FI | {T.FLOAT8E4M3FN},
}  # fmt: skip
REDUCE = {op for op in OPS if op.startswith("Reduce")}
# op -> (input index, what it is) that must be an initializer or a Constant output
CONST_INPUTS = {
    **{op: ((1, "axes"),) for op in REDUCE | {"Squeeze", "Unsqueeze"}},
    "Slice": ((3, "axes"),), "Pad": ((3, "axes"),), "CumSum": ((1, "axis"),),
    "Dropout": ((2, "training_mode"),), "OneHot": ((1, "depth"),), "TopK": ((1, "K"),),
}  # fmt: skip
# ops whose every input carries the op's dtype (the others: input 0 only; Where: the two branches)
ALL_TYPED = set(
    "Add Sub Mul Div Mod Max Min Mean Sum Concat Equal Greater GreaterOrEqual Less LessOrEqual And Or Xor "
    "MatMul Gemm Einsum PRelu Range Clip Conv ConvTranspose LayerNormalization BatchNormalization "
    "InstanceNormalization GroupNormalization".split()
)
RESIZE = {
    "coordinate_transformation_mode": {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                       "asymmetric", "align_corners"},
    "mode": {"nearest", "linear"},
    "nearest_mode": {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"},
    "keep_aspect_ratio_policy": {"stretch"},
}  # fmt: skip


def dtype_name(t: int) -> str:
    return T.DataType.Name(t) if t in T.DataType.values() else str(t)


def _load(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(os.fspath(model), load_external_data=False)


def _typed_inputs(node) -> list[str]:
    if node.op_type == "Where":
        return list(node.input[1:3])
    return list(node.input) if node.op_type in ALL_TYPED else list(node.input[:1])


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


class _Graph:
    """Types, constants and producers of one (sub)graph, with its enclosing scope's."""

    def __init__(self, graph, outer=None, runtime=()):
        self.types = dict(outer.types) if outer else {}
        self.weights = dict(outer.weights) if outer else {}  # name -> TensorProto (initializers, Constants)
        self.producer = dict(outer.producer) if outer else {}
        self.runtime = set(outer.runtime) if outer else set(runtime)  # graph inputs (not initializers)
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            if vi.type.tensor_type.elem_type:
                self.types[vi.name] = vi.type.tensor_type.elem_type
        for t in graph.initializer:
            self.types[t.name], self.weights[t.name] = t.data_type, t
        self.runtime |= {i.name for i in graph.input} - {t.name for t in graph.initializer}
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            value = _attr(node, "value") if node.op_type == "Constant" else None
            if value is not None:
                self.weights[node.output[0]] = value
                self.types[node.output[0]] = value.data_type

    def why_not_constant(self, name: str) -> str | None:
        """None if ``name`` is weights to the parser; else why not (folded from constants / runtime input)."""
        if name in self.weights:
            return None
        if name in self.runtime:
            return "is a runtime graph input"
        seen, stack, runtime = set(), [name], []
        while stack:
            n = stack.pop()
            if n in seen or n in self.weights or not n:
                continue
            seen.add(n)
            if n in self.runtime:
                runtime.append(n)
            elif n in self.producer:
                stack.extend(self.producer[n].input)
        src = self.producer.get(name)
        made = f"is computed by {src.op_type} {src.name!r}" if src is not None else "has no producer"
        if runtime:
            return f"{made} from runtime input(s) {sorted(runtime)}"
        return f"{made} from constants only (fold it into an initializer, e.g. onnxscript's optimizer)"


def _node_rules(node, g: _Graph) -> list[str]:
    """Attribute and constant-input rules of one node (the op is known to be in ``OPS``)."""
    op, why = node.op_type, []
    for index, what in CONST_INPUTS.get(op, ()):
        if len(node.input) > index and node.input[index]:
            reason = g.why_not_constant(node.input[index])
            if reason:
                why.append(f"{what} must be an initializer or Constant (TensorRT reads it at build time); "
                           f"{what} {node.input[index]!r} {reason}")  # fmt: skip
    if op in REDUCE and g.types.get(node.input[0]) in (T.BOOL, T.UINT8):
        why.append(f"reduction of a {dtype_name(g.types[node.input[0]])} tensor (TensorRT reduces only "
                   "FP32/FP16/BF16/INT32/INT64)")  # fmt: skip
    if op in ("AveragePool", "MaxPool", "LpPool"):
        if any(d != 1 for d in _attr(node, "dilations", []) or []):
            why.append("dilations must be empty or all ones")
        kernel = _attr(node, "kernel_shape", []) or []
        if op != "LpPool" and len(kernel) not in (2, 3):
            why.append(f"only 2D or 3D pooling (kernel_shape {list(kernel)})")
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            why.append("the Indices output is unsupported")
    if op == "LayerNormalization" and any(node.output[1:]):
        why.append("only the first output Y is supported")
    if op == "TopK":
        if _attr(node, "sorted", 1) != 1:
            why.append("sorted must be 1")
        k = g.weights.get(node.input[1]) if len(node.input) > 1 else None
        k = onnx.numpy_helper.to_array(k) if k is not None else None
        if k is not None and k.size and int(k.max()) >= 3840:
            why.append("K must be < 3840")
    if op == "ScatterND" and _attr(node, "reduction", b"none") not in (b"none", "none"):
        why.append("reduction is unsupported")
    if op == "Resize":
        for name, allowed in RESIZE.items():
            value = _attr(node, name)
            value = value.decode() if isinstance(value, bytes) else value
            if value is not None and value not in allowed:
                why.append(f"{name} {value!r} unsupported (supported: {', '.join(sorted(allowed))})")
        if _attr(node, "antialias", 0):
            why.append("antialiasing is unsupported")
    if op == "Constant" and any(
        a.name in ("sparse_value", "value_string", "value_strings") for a in node.attribute
    ):
        why.append("sparse_value / value_string(s) are unsupported")
    if op == "LSTM" and (_attr(node, "input_forget", 0) or _attr(node, "layout", 0)):
        why.append("input_forget and layout must be 0")
    if op == "Dropout" and len(node.input) > 2 and node.input[2] in g.weights:
        if onnx.numpy_helper.to_array(g.weights[node.input[2]]).any():
            why.append("training_mode must be False")
    return why


def _check_nodes(nodes, g: _Graph, functions: dict, where: str) -> list[str]:
    problems = []
    for i, node in enumerate(nodes):
        label = f"node {node.name or f'#{i}'!r} ({node.op_type}{where})"
        if node.domain not in ("", "ai.onnx"):
            body = functions.get((node.domain, node.op_type))
            if body is None:
                problems.append(f"{label}: op of domain {node.domain!r} is not an ONNX op TensorRT's parser "
                                "imports (a custom op needs a TensorRT plugin)")  # fmt: skip
            else:
                # a function sees only its body; its inputs count as runtime values (the conservative choice)
                scope = _Graph(onnx.helper.make_graph(list(body.node), "f", [], []), runtime=body.input)
                problems += _check_nodes(body.node, scope, functions, f" in function {node.op_type}")
            continue
        if node.op_type not in OPS:
            problems.append(f"{label}: op {node.op_type} is not supported by TensorRT 10.x's ONNX parser")
            continue
        allowed, cast = OPS[node.op_type], node.op_type in ("Cast", "CastLike")
        for name in () if cast else dict.fromkeys(node.input):
            if name and g.types.get(name) == T.UINT8:
                problems.append(
                    f"{label}: input {name!r} is UINT8, which TensorRT allows only as a {UINT8_RULE}"
                )
        bool_reduce = node.op_type in REDUCE and g.types.get(node.input[0]) in (T.BOOL, T.UINT8)
        for name in dict.fromkeys(_typed_inputs(node)):
            t = g.types.get(name)
            if name and t is not None and t not in allowed and (cast or t != T.UINT8) and not bool_reduce:
                names = ", ".join(sorted(dtype_name(x) for x in allowed))
                problems.append(f"{label}: input {name!r} is {dtype_name(t)}; {node.op_type} takes {names}")
        if cast:
            to = _attr(node, "to") if node.op_type == "Cast" else g.types.get(node.input[1])
            if to is not None and to not in CAST:
                problems.append(f"{label}: cast to {dtype_name(to)} is unsupported")
        if node.op_type == "Where" and g.types.get(node.input[0], T.BOOL) != T.BOOL:
            problems.append(f"{label}: condition must be BOOL")
        problems += [f"{label}: {w}" for w in _node_rules(node, g)]
        for a in node.attribute:
            subgraphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sub in subgraphs:
                problems += _check_nodes(sub.node, _Graph(sub, g), functions, f" in {node.op_type} body")
    return problems


def check_trt(model_path_or_proto) -> list[str]:
    """Every reason TensorRT 10.3's ONNX parser would reject the model (module doc); [] when none is known.

    Each problem names the node (name, op type) or the model field, and why.
    """
    model = _load(model_path_or_proto)
    problems = []
    if not 1 <= model.ir_version <= IR_MAX:
        problems.append(f"model: IR version {model.ir_version}; TensorRT 10.3's parser reads IR <= {IR_MAX}")
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    opset = opsets.get("ai.onnx")
    if opset is None or not OPSET_MIN <= opset <= OPSET_MAX:
        problems.append(f"model: ai.onnx opset {opset}; TensorRT 10.x parses opsets {OPSET_MIN}-{OPSET_MAX}")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as err:  # inference is best effort: rules needing types then see fewer of them
        problems.append(f"model: ONNX shape inference failed ({type(err).__name__}: {err})")
        inferred = model
    g = _Graph(inferred.graph)
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        inits = {t.name for t in model.graph.initializer}
        for vi in values:
            t = vi.type.tensor_type.elem_type
            if vi.name not in inits and t not in IO_DTYPES:
                problems.append(
                    f"{kind} {vi.name!r}: dtype {dtype_name(t)} is not a TensorRT network I/O type"
                )
    functions = {(f.domain, f.name): f for f in model.functions}
    return problems + _check_nodes(inferred.graph.node, g, functions, "")


def op_counts(model_path_or_proto) -> Counter:
    """Op types of the main graph's nodes, with counts."""
    return Counter(n.op_type for n in _load(model_path_or_proto).graph.node)


def check_report(model_path_or_proto) -> tuple[bool, list[str]]:
    """(passed, lines to print): the problems one per line, or the one 'passed' line with the ops used."""
    model = _load(model_path_or_proto)
    problems = check_trt(model)
    ops = op_counts(model)
    if problems:
        return False, [f"TensorRT 10.3 parser check: FAILED ({len(problems)} problems; rules: {SOURCE})"] + [
            f"  {p}" for p in problems
        ]
    n = sum(ops.values())
    return True, [f"TensorRT 10.3 parser check: passed ({n} nodes, ops: {', '.join(sorted(ops))})"]


# Ops that only move or copy values: applied to a cast copy of a UINT8 tensor they give exactly the cast
# of their UINT8 result (every uint8 value is exact in FP16/BF16/FP32).
_MOVES = {"Concat", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Split", "Expand",
          "Tile", "Identity"}  # fmt: skip


def cast_uint8_inputs(model: onnx.ModelProto) -> list[str]:
    """Move the Cast of UINT8 graph inputs up to the inputs, in place; returns the inputs rewritten.

    TensorRT takes UINT8 only as a network input feeding a Cast, while torch's exporter keeps uint8 images
    through data-movement ops (Concat, Transpose, ...) until the cast. When every path from the UINT8
    inputs is such ops ending in Casts to one float type, this inserts that Cast right after each input and
    retypes the tensors in between; values are bit-identical (the moves only copy exact values). Otherwise
    (arithmetic on uint8, a UINT8 output) the model is left as it is and the check names the node.
    """
    graph = model.graph
    inputs = [vi.name for vi in graph.input if vi.type.tensor_type.elem_type == T.UINT8]
    region, moves, casts = set(inputs), [], []
    for node in graph.node:  # topological order (onnx.checker requires it)
        if not any(name in region for name in node.input):
            continue
        if node.op_type == "Cast":
            casts.append(node)
            continue
        data = list(node.input) if node.op_type == "Concat" else list(node.input[:1])
        if node.op_type not in _MOVES or not all(n in region for n in data):
            return []
        if any(n in region for n in node.input if n not in data):
            return []
        moves.append(node)
        region.update(node.output)
    targets = {_attr(n, "to") for n in casts}
    if not moves or len(targets) != 1 or region & {o.name for o in graph.output}:
        return []
    (to,) = targets
    if to not in (T.FLOAT, T.FLOAT16, T.BFLOAT16):
        return []
    renamed = {name: f"{name}_as_{dtype_name(to).lower()}" for name in inputs}
    for node in moves:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    for vi in graph.value_info:
        if vi.name in region:
            vi.type.tensor_type.elem_type = to
    new = [onnx.helper.make_node("Cast", [x], [y], name=f"cast_{x}", to=to) for x, y in renamed.items()]
    for i, node in enumerate(new):
        graph.node.insert(i, node)
    return inputs
