"""Building blocks of the preprocessing ONNX graph that the feature kinds assemble their subgraphs from.

:class:`GraphBuilder` accumulates nodes and constants (every internal name prefixed ``pre::``);
:func:`lookup` maps strings to table indices (vocabulary or MurmurHash3), :func:`numeric` is the
impute → clip → signed log1p → standardize / bucket chain in float64, :func:`pad_to` fixes a sequence
width. Only the export imports this module (it imports onnx); kinds import it inside their
``graph`` method, so ``import recsys_mtl.spec`` never needs onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from recsys_mtl.errors import RecsysMTLError
from recsys_mtl.features.fitted import FIRST, MISSING, OOV, FittedNumeric, FittedTable
from serving.contract import NULL_TOKEN

ML_DOMAIN, MS_DOMAIN = "ai.onnx.ml", "com.microsoft"
ML_OPSET, MS_OPSET = 3, 1


class ExportError(RecsysMTLError):
    """A model or its preprocessing cannot be exported faithfully."""


@dataclass
class GraphBuilder:
    """Accumulates nodes and constants; every internal name carries the ``pre::`` prefix."""

    #: the graph's ONNX opset (a kind needing a newer operator refuses a lower one, naming itself)
    opset: int = 20
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    counter: int = 0

    def name(self, hint: str) -> str:
        self.counter += 1
        return f"pre::{hint}:{self.counter}"

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, domain: str = "", **attrs: object) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs))
        return out


def lookup(b: "GraphBuilder", x: str, table: FittedTable, hint: str) -> str:
    """String tensor (any shape) → int64 indices of the same shape: "" → MISSING, unseen → OOV."""
    if table.vocab is not None:
        if NULL_TOKEN in table.vocab:
            raise ExportError(
                f"table {table.name!r}: the vocabulary contains the empty string, which the exported "
                "graph reserves for missing values"
            )
        keys = [NULL_TOKEN, *table.vocab]
        values = [MISSING, *range(FIRST, FIRST + len(table.vocab))]
        return b.op("LabelEncoder", [x], f"{hint}.vocab", domain=ML_DOMAIN,
                    keys_strings=keys, values_int64s=values, default_int64=OOV)
    assert table.hash_buckets is not None
    # MurmurHash3 x86 32-bit, unsigned: equal to mmh3.hash(value, seed, signed=False)
    hashed = b.op("MurmurHash3", [x], f"{hint}.hash", domain=MS_DOMAIN, seed=table.hash_seed, positive=1)
    wide = b.op("Cast", [hashed], f"{hint}.i64", to=TensorProto.INT64)
    bucket = b.op("Mod", [wide, b.const(np.array(table.hash_buckets, np.int64), "buckets")], f"{hint}.mod")
    index = b.op("Add", [bucket, b.const(np.array(FIRST, np.int64), "first")], f"{hint}.idx")
    present = b.op("LabelEncoder", [x], f"{hint}.present", domain=ML_DOMAIN,
                   keys_strings=[NULL_TOKEN], values_int64s=[0], default_int64=1)
    return b.op("Mul", [index, present], f"{hint}.masked")


def numeric(b: "GraphBuilder", x: str, fitted: FittedNumeric, hint: str) -> tuple[str, str]:
    """double (B,) → (value: int64 bucket or float32 standardized, float32 missing indicator), (B,)."""
    missing = b.op("IsNaN", [x], f"{hint}.isnan")
    v = b.op("Where", [missing, b.const(np.array(fitted.impute_value, np.float64), "impute"), x], f"{hint}.imputed")
    if fitted.clip_min is not None:
        v = b.op("Max", [v, b.const(np.array(fitted.clip_min, np.float64), "clip_min")], f"{hint}.clip_lo")
    if fitted.clip_max is not None:
        v = b.op("Min", [v, b.const(np.array(fitted.clip_max, np.float64), "clip_max")], f"{hint}.clip_hi")
    indicator = b.op("Cast", [missing], f"{hint}.indicator", to=TensorProto.FLOAT)
    if fitted.boundaries is not None:
        # searchsorted(boundaries, log1p(v), side="right") = number of boundaries <= log1p(v), counted
        # on v against thresholds found with numpy's own log1p: an ulp of difference between ONNX
        # Log(1 + v) and numpy.log1p would move values sitting exactly on an edge to another bucket
        edges = b.const(bucket_thresholds(fitted).reshape(1, -1), "edges")
        col = b.op("Unsqueeze", [v, b.const(np.array([1], np.int64), "axis1")], f"{hint}.col")
        ge = b.op("Cast", [b.op("GreaterOrEqual", [col, edges], f"{hint}.ge")], f"{hint}.ge64", to=TensorProto.INT64)
        count = b.op("ReduceSum", [ge, b.const(np.array([1], np.int64), "axis1")], f"{hint}.count", keepdims=0)
        return b.op("Add", [count, b.const(np.array(FIRST, np.int64), "first")], f"{hint}.bucket"), indicator
    if fitted.log1p:
        one = b.const(np.array(1.0, np.float64), "one")
        log = b.op("Log", [b.op("Add", [b.op("Abs", [v], f"{hint}.abs"), one], f"{hint}.1p")], f"{hint}.log")
        v = b.op("Mul", [b.op("Sign", [v], f"{hint}.sign"), log], f"{hint}.slog1p")
    centred = b.op("Sub", [v, b.const(np.array(fitted.mean, np.float64), "mean")], f"{hint}.centred")
    scaled = b.op("Div", [centred, b.const(np.array(fitted.std, np.float64), "std")], f"{hint}.scaled")
    return b.op("Cast", [scaled], f"{hint}.f32", to=TensorProto.FLOAT), indicator


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))  # exactly FittedNumeric.apply's transform


def bucket_thresholds(fitted: FittedNumeric) -> np.ndarray:
    """Per bucket edge e, the smallest float64 t with transform(t) >= e (transform = signed log1p
    when set, else identity), so ``t <= v`` ⟺ ``e <= transform(v)`` for every double v."""
    edges = np.asarray(fitted.boundaries, np.float64)
    if not fitted.log1p:
        return edges
    out = np.sign(edges) * np.expm1(np.abs(edges))
    for i, e in enumerate(edges):
        t = out[i]
        for _ in range(64):  # a few ulps at most; the loop bound only guards against a bug
            if _signed_log1p(np.array([t]))[0] < e:
                t = np.nextafter(t, np.inf)
            elif _signed_log1p(np.array([np.nextafter(t, -np.inf)]))[0] >= e:
                t = np.nextafter(t, -np.inf)
            else:
                break
        else:
            raise ExportError(f"numeric feature {fitted.name!r}: cannot place bucket edge {e!r} exactly")
        out[i] = t
    return out


def pad_to(b: "GraphBuilder", idx: str, max_len: int, hint: str) -> str:
    """(B, l) int64 → (B, max_len): zero (padding) filled on the right, columns past max_len dropped."""
    batch = b.op("Shape", [idx], f"{hint}.shape", start=0, end=1)
    shape = b.op("Concat", [batch, b.const(np.array([max_len], np.int64), "max_len")], f"{hint}.padshape", axis=0)
    zeros = b.op("ConstantOfShape", [shape], f"{hint}.zeros", value=numpy_helper.from_array(np.array([0], np.int64)))
    wide = b.op("Concat", [idx, zeros], f"{hint}.wide", axis=1)
    return slice_cols(b, wide, max_len, f"{hint}.padded")


def slice_cols(b: "GraphBuilder", x: str, n: int, hint: str) -> str:
    return b.op("Slice", [x, b.const(np.array([0], np.int64), "start"), b.const(np.array([n], np.int64), "stop"),
                          b.const(np.array([1], np.int64), "axis1")], hint)


def stack(b: "GraphBuilder", columns: list[str], hint: str) -> str:
    """(B,) tensors → (B, len(columns))."""
    # one stacking op instead of an Unsqueeze per column + Concat: fewer kernel launches per call
    seq = b.op("SequenceConstruct", columns, f"{hint}.seq")
    return b.op("ConcatFromSequence", [seq], hint, axis=1, new_axis=1)
