"""A small, safe arithmetic language over raw numeric columns: parsed here (never ``eval``), computed
by polars in training and by ONNX operators in the exported graph.

Grammar (SQL-like, keywords case-insensitive)::

    expr    := or
    or      := and ("OR" and)*
    and     := not ("AND" not)*
    not     := "NOT" not | cmp
    cmp     := sum (("<" | "<=" | ">" | ">=" | "=" | "==" | "!=" | "<>") sum)?
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := "-" unary | "+" unary | atom
    atom    := number | column | "(" expr ")" | function "(" expr ("," expr)* ")"
             | "CASE" ("WHEN" expr "THEN" expr)+ ("ELSE" expr)? "END"

A column is an identifier (``[A-Za-z_][A-Za-z0-9_.]*``) or a double-quoted name (``"unit price"``).
Functions: ``abs``, ``log`` / ``ln`` (natural), ``log1p``, ``exp``, ``sqrt``, ``least`` / ``min`` and
``greatest`` / ``max`` (row-wise, two or more arguments), ``coalesce`` (first non-missing).

Values are float64 or missing (polars: null; ONNX: NaN), and both sides follow the same rules:

* a missing operand makes an arithmetic result, a comparison, ``least`` / ``greatest`` and a function
  missing (unlike SQL, ``least`` / ``greatest`` do not skip missing arguments);
* every intermediate result that is not finite is missing: division by zero, ``log`` of a
  non-positive number, ``sqrt`` of a negative one, ``exp`` overflow all give missing;
* comparisons give 1.0 / 0.0; truth is "non-zero"; ``AND`` / ``OR`` / ``NOT`` follow SQL's
  three-valued logic (false AND missing = false, true OR missing = true, otherwise missing);
* ``CASE`` takes the first ``WHEN`` whose condition is true (missing is not true); no branch and no
  ``ELSE`` gives missing.

Anything else (``%``, ``^``, ``||``, an unknown function, a string literal) is refused by
:func:`parse` with the operator or function named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder


class ExpressionError(ValueError):
    """An expression outside the supported subset; the message names the operator or function."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Col:
    name: str


@dataclass(frozen=True)
class Op:
    """An operator or function applied to its arguments (``op`` as written in the grammar, lower case)."""

    op: str
    args: tuple["Node", ...]


@dataclass(frozen=True)
class Case:
    whens: tuple[tuple["Node", "Node"], ...]
    otherwise: "Node | None"


Node = Union[Num, Col, Op, Case]

#: function name → (canonical op, minimum arguments, maximum arguments or None)
FUNCTIONS: dict[str, tuple[str, int, int | None]] = {
    "abs": ("abs", 1, 1), "log": ("log", 1, 1), "ln": ("log", 1, 1), "log1p": ("log1p", 1, 1),
    "exp": ("exp", 1, 1), "sqrt": ("sqrt", 1, 1),
    "least": ("least", 2, None), "min": ("least", 2, None), "greatest": ("greatest", 2, None), "max": ("greatest", 2, None),
    "coalesce": ("coalesce", 2, None),
}
_KEYWORDS = {"and", "or", "not", "case", "when", "then", "else", "end"}
_COMPARE = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "==": "=", "!=": "!=", "<>": "!="}
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    | "(?P<quoted>[^"]+)"
    | (?P<op><=|>=|==|!=|<>|[-+*/(),<>=])
    | (?P<bad>\S+?)(?=[\s\w"(),]|$)
    )""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)  # type: ignore[arg-type]
        if kind == "bad":
            raise ExpressionError(f"operator {value!r} is not supported (supported: + - * / comparisons AND OR NOT "
                                  f"CASE WHEN and the functions {', '.join(sorted(FUNCTIONS))})")
        out.append((kind, value))  # type: ignore[arg-type]
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def word(self) -> str | None:
        t = self.peek()
        return t[1].lower() if t is not None and t[0] == "name" and t[1].lower() in _KEYWORDS else None

    def take(self, value: str) -> None:
        t = self.peek()
        if t is None or (t[1].lower() if t[0] == "name" else t[1]) != value:
            raise ExpressionError(f"expected {value.upper() if value.isalpha() else value!r}, got "
                                  f"{'the end' if t is None else repr(t[1])}")
        self.i += 1

    def parse(self) -> Node:
        if not self.toks:
            raise ExpressionError("the expression is empty")
        node = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.word() == "or":
            self.i += 1
            node = Op("or", (node, self.and_()))
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.word() == "and":
            self.i += 1
            node = Op("and", (node, self.not_()))
        return node

    def not_(self) -> Node:
        if self.word() == "not":
            self.i += 1
            return Op("not", (self.not_(),))
        return self.cmp()

    def cmp(self) -> Node:
        node = self.sum()
        t = self.peek()
        if t is not None and t[0] == "op" and t[1] in _COMPARE:
            self.i += 1
            node = Op(_COMPARE[t[1]], (node, self.sum()))
        return node

    def sum(self) -> Node:
        node = self.product()
        while (t := self.peek()) is not None and t[0] == "op" and t[1] in "+-":
            self.i += 1
            node = Op(t[1], (node, self.product()))
        return node

    def product(self) -> Node:
        node = self.unary()
        while (t := self.peek()) is not None and t[0] == "op" and t[1] in "*/":
            self.i += 1
            node = Op(t[1], (node, self.unary()))
        return node

    def unary(self) -> Node:
        t = self.peek()
        if t is not None and t[0] == "op" and t[1] in "+-":
            self.i += 1
            inner = self.unary()
            return Op("neg", (inner,)) if t[1] == "-" else inner
        return self.atom()

    def atom(self) -> Node:
        t = self.peek()
        if t is None:
            raise ExpressionError("the expression ends too early")
        self.i += 1
        kind, value = t
        if kind == "num":
            return Num(float(value))
        if kind == "quoted":
            return Col(value)
        if kind == "op" and value == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "name":
            low = value.lower()
            if low == "case":
                return self.case()
            if low in _KEYWORDS:
                raise ExpressionError(f"unexpected {value.upper()}")
            nxt = self.peek()
            if nxt is not None and nxt == ("op", "("):
                return self.call(value)
            return Col(value)
        raise ExpressionError(f"unexpected {value!r}")

    def call(self, name: str) -> Node:
        spec = FUNCTIONS.get(name.lower())
        if spec is None:
            raise ExpressionError(f"function {name!r} is not supported (supported: {', '.join(sorted(FUNCTIONS))})")
        self.take("(")
        args = [self.or_()]
        while self.peek() == ("op", ","):
            self.i += 1
            args.append(self.or_())
        self.take(")")
        op, lo, hi = spec
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if hi == lo else f"at least {lo}"
            raise ExpressionError(f"function {name!r} takes {want} argument(s), got {len(args)}")
        return Op(op, tuple(args))

    def case(self) -> Node:
        whens = []
        while self.word() == "when":
            self.i += 1
            cond = self.or_()
            self.take("then")
            whens.append((cond, self.or_()))
        if not whens:
            raise ExpressionError("CASE needs at least one WHEN ... THEN ...")
        otherwise = None
        if self.word() == "else":
            self.i += 1
            otherwise = self.or_()
        self.take("end")
        return Case(tuple(whens), otherwise)


def parse(text: str) -> Node:
    """The syntax tree of ``text``; :class:`ExpressionError` naming what is unsupported."""
    return _Parser(text).parse()


def columns(node: Node) -> list[str]:
    """The raw columns ``node`` reads, in first-use order."""
    if isinstance(node, Col):
        return [node.name]
    if isinstance(node, Op):
        return list(dict.fromkeys(c for a in node.args for c in columns(a)))
    if isinstance(node, Case):
        parts = [c for w in node.whens for c in (*columns(w[0]), *columns(w[1]))]
        return list(dict.fromkeys(parts + (columns(node.otherwise) if node.otherwise is not None else [])))
    return []


# ---------------------------------------------------------------------- polars
def _finite(x: pl.Expr) -> pl.Expr:
    """Non-finite → null (so neither NaN nor ±inf ever reaches the next operator)."""
    return pl.when(x.is_finite()).then(x).otherwise(None)


def _truth(x: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(surely true, surely false) of a three-valued float, never null."""
    return (x != 0).fill_null(False), (x == 0).fill_null(False)


_POLARS_UNARY: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "neg": lambda x: -x, "abs": lambda x: x.abs(), "log": lambda x: x.log(), "log1p": lambda x: x.log1p(),
    "exp": lambda x: x.exp(), "sqrt": lambda x: x.sqrt(),
}
_POLARS_BINARY: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "<": lambda a, b: (a < b).cast(pl.Float64), "<=": lambda a, b: (a <= b).cast(pl.Float64),
    ">": lambda a, b: (a > b).cast(pl.Float64), ">=": lambda a, b: (a >= b).cast(pl.Float64),
    "=": lambda a, b: (a == b).cast(pl.Float64), "!=": lambda a, b: (a != b).cast(pl.Float64),
}


def to_polars(node: Node) -> pl.Expr:
    """Float64 expression over the raw columns (null = missing, never NaN or ±inf)."""
    if isinstance(node, Num):
        return pl.lit(node.value, dtype=pl.Float64)
    if isinstance(node, Col):
        return _finite(pl.col(node.name).cast(pl.Float64))
    if isinstance(node, Case):
        whens = [(_truth(to_polars(c))[0], to_polars(v)) for c, v in node.whens]
        chain = pl.when(whens[0][0]).then(whens[0][1])
        for cond, value in whens[1:]:
            chain = chain.when(cond).then(value)  # type: ignore[assignment]
        return chain.otherwise(to_polars(node.otherwise) if node.otherwise is not None else pl.lit(None, pl.Float64))
    args = [to_polars(a) for a in node.args]
    if node.op in _POLARS_UNARY:
        return _finite(_POLARS_UNARY[node.op](args[0]))
    if node.op in _POLARS_BINARY:
        return _finite(_POLARS_BINARY[node.op](args[0], args[1]))
    if node.op in ("least", "greatest"):
        any_null = pl.any_horizontal([a.is_null() for a in args])
        value = pl.min_horizontal(args) if node.op == "least" else pl.max_horizontal(args)
        return pl.when(any_null).then(None).otherwise(value)
    if node.op == "coalesce":
        return pl.coalesce(args)
    if node.op == "not":
        t, f = _truth(args[0])
        return pl.when(t).then(0.0).when(f).then(1.0).otherwise(None)
    (at, af), (bt, bf) = _truth(args[0]), _truth(args[1])
    if node.op == "and":
        return pl.when(af | bf).then(0.0).when(at & bt).then(1.0).otherwise(None)
    assert node.op == "or", node.op
    return pl.when(at | bt).then(1.0).when(af & bf).then(0.0).otherwise(None)


# ---------------------------------------------------------------------- ONNX
_ONNX_UNARY = {"neg": "Neg", "abs": "Abs", "log": "Log", "exp": "Exp", "sqrt": "Sqrt"}
_ONNX_BINARY = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div"}
_ONNX_COMPARE = {"<": "Less", "<=": "LessOrEqual", ">": "Greater", ">=": "GreaterOrEqual", "=": "Equal"}


class _Onnx:
    """Builds one expression as ONNX nodes: every value a double (B,) tensor, NaN = missing."""

    def __init__(self, b: "GraphBuilder", hint: str):
        self.b, self.hint = b, hint
        self.nan = b.const(np.array(np.nan), "nan")
        self.zero = b.const(np.array(0.0), "zero")
        self.one = b.const(np.array(1.0), "one")

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        return self.b.op(op_type, inputs, self.hint, **attrs)

    def finite(self, x: str) -> str:
        """±inf → NaN (NaN stays NaN)."""
        return self.op("Where", [self.op("IsInf", [x]), self.nan, x])

    def missing(self, args: list[str]) -> str:
        miss = self.op("IsNaN", [args[0]])
        for a in args[1:]:
            miss = self.op("Or", [miss, self.op("IsNaN", [a])])
        return miss

    def truth(self, x: str) -> tuple[str, str]:
        """(surely true, surely false) booleans: NaN is neither."""
        false = self.op("Equal", [x, self.zero])
        true = self.op("And", [self.op("Not", [false]), self.op("Not", [self.op("IsNaN", [x])])])
        return true, false

    def where(self, cond: str, then: str, otherwise: str) -> str:
        return self.op("Where", [cond, then, otherwise])

    def build(self, node: Node, like: str) -> str:
        """``like``: any (B,) double input, to broadcast constants to the batch."""
        if isinstance(node, Num):
            return self.op("Expand", [self.b.const(np.array(node.value), "num"), self.op("Shape", [like])])
        if isinstance(node, Col):
            return node.name  # the server refuses ±inf, and NaN is already missing
        if isinstance(node, Case):
            acc = self.build(node.otherwise, like) if node.otherwise is not None else self.op(
                "Expand", [self.nan, self.op("Shape", [like])])
            for cond, value in reversed(node.whens):
                acc = self.where(self.truth(self.build(cond, like))[0], self.build(value, like), acc)
            return acc
        args = [self.build(a, like) for a in node.args]
        if node.op in _ONNX_UNARY:
            return self.finite(self.op(_ONNX_UNARY[node.op], args))
        if node.op == "log1p":
            return self.finite(self.op("Log", [self.op("Add", [args[0], self.one])]))
        if node.op in _ONNX_BINARY:
            return self.finite(self.op(_ONNX_BINARY[node.op], args))
        if node.op in _ONNX_COMPARE or node.op == "!=":
            cmp = self.op(_ONNX_COMPARE.get(node.op, "Equal"), args)
            if node.op == "!=":
                cmp = self.op("Not", [cmp])
            return self.where(self.missing(args), self.nan, self.op("Cast", [cmp], to=11))  # 11 = DOUBLE
        if node.op in ("least", "greatest"):
            value = self.op("Min" if node.op == "least" else "Max", args)
            return self.where(self.missing(args), self.nan, value)
        if node.op == "coalesce":
            acc = args[-1]
            for a in reversed(args[:-1]):
                acc = self.where(self.op("IsNaN", [a]), acc, a)
            return acc
        if node.op == "not":
            t, f = self.truth(args[0])
            return self.where(t, self.zero, self.where(f, self.one, self.nan))
        (at, af), (bt, bf) = self.truth(args[0]), self.truth(args[1])
        if node.op == "and":
            return self.where(self.op("Or", [af, bf]), self.zero, self.where(self.op("And", [at, bt]), self.one, self.nan))
        assert node.op == "or", node.op
        return self.where(self.op("Or", [at, bt]), self.one, self.where(self.op("And", [af, bf]), self.zero, self.nan))


def to_onnx(node: Node, b: "GraphBuilder", hint: str) -> str:
    """The (B,) double tensor of ``node`` from the raw double inputs (named as their columns)."""
    cols = columns(node)
    if not cols:
        raise ExpressionError("the expression reads no column")
    return _Onnx(b, hint).build(node, cols[0])
