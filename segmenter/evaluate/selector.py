"""Label selectors: the Calico selector language and Kubernetes ``LabelSelector``s, one AST.

Calico's language (policy-semantics.md §3.2) is parsed by a tokenizer plus a recursive-descent
parser that follows Calico's own grammar (``libcalico-go/lib/selector``)::

    or_expr   := and_expr ( "||" and_expr )*
    and_expr  := operation ( "&&" operation )*
    operation := "!"* ( "(" or_expr ")" | "all()" | "global()" | "has(" label ")"
                      | label ( "==" | "!=" | "contains" | "starts with" | "ends with" ) string
                      | label ( "in" | "not in" ) "{" [ string ( "," string )* [","] ] "}" )

So ``||`` binds loosest, then ``&&``, then ``!``; a run of ``!`` collapses to one negation. An empty
selector means ``all()``. Strings take single or double quotes and have **no escapes**. Whitespace
is a space or a tab only (Calico rejects a newline inside a selector).

``!=`` and ``not in`` also match when the label is absent. A Kubernetes ``LabelSelector`` maps onto
the same nodes: ``matchLabels`` → ``==``, ``In`` → ``in``, ``NotIn`` → ``not in`` (absent keys
match, as Kubernetes says), ``Exists`` → ``has()``, ``DoesNotExist`` → ``!has()``.

``all()`` and ``global()`` depend on where the selector is used. In a top-level or rule
``selector`` ``all()`` is true. In a rule ``namespaceSelector`` Calico rewrites ``all()`` to "the
endpoint is namespaced" and ``global()`` to "the endpoint is not namespaced" (a GlobalNetworkSet);
:meth:`Node.match` takes ``namespaced`` for that context.

Examples:
    >>> sel = parse_selector("app == 'db' && tier not in {'a', 'b'}")
    >>> sel.match({"app": "db"})
    True
    >>> str(parse_selector("a == 'x' || b == 'y' && !has(c)"))
    "a == 'x' || (b == 'y' && !has(c))"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segmenter.k8s import is_label_key, is_label_value

__all__ = [
    "All",
    "And",
    "Contains",
    "EndsWith",
    "Eq",
    "Global",
    "Has",
    "In",
    "Ne",
    "Node",
    "Not",
    "NotIn",
    "Or",
    "SelectorError",
    "StartsWith",
    "from_label_selector",
    "parse_selector",
    "tokenize",
]


class SelectorError(ValueError):
    """A selector that Calico (or the Kubernetes API server) would reject."""


# --------------------------------------------------------------------------------------------
# AST


class Node:
    """A selector expression. Immutable and hashable (subclasses are frozen dataclasses)."""

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        """Evaluate against ``labels``.

        ``namespaced`` is ``None`` for endpoint selectors. For a rule ``namespaceSelector`` it
        says whether the endpoint lives in a namespace; ``labels`` are then the namespace's.
        """
        raise NotImplementedError

    def uses_global(self) -> bool:
        """True when ``global()`` appears anywhere (only valid in a rule namespaceSelector)."""
        return False

    def _child_str(self) -> str:
        return str(self)


def _quote(value: str) -> str:
    # No escapes exist: pick the quote that the value does not contain.
    return f'"{value}"' if "'" in value else f"'{value}'"


@dataclass(frozen=True)
class All(Node):
    """``all()``."""

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        return True if namespaced is None else namespaced

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True)
class Global(Node):
    """``global()``: non-namespaced endpoints (global network sets, host endpoints)."""

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        return False if namespaced is None else not namespaced

    def uses_global(self) -> bool:
        return True

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True)
class Has(Node):
    key: str

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True)
class Eq(Node):
    key: str
    value: str

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{self.key} == {_quote(self.value)}"


@dataclass(frozen=True)
class Ne(Node):
    """``k != 'v'``: also true when ``k`` is absent."""

    key: str
    value: str

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        return labels.get(self.key) != self.value

    def __str__(self) -> str:
        return f"{self.key} != {_quote(self.value)}"


@dataclass(frozen=True)
class In(Node):
    key: str
    values: frozenset[str]

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        value = labels.get(self.key)
        return value is not None and value in self.values

    def __str__(self) -> str:
        return f"{self.key} in {{{', '.join(_quote(v) for v in sorted(self.values))}}}"


@dataclass(frozen=True)
class NotIn(Node):
    """``k not in {...}``: also true when ``k`` is absent."""

    key: str
    values: frozenset[str]

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        value = labels.get(self.key)
        return value is None or value not in self.values

    def __str__(self) -> str:
        return f"{self.key} not in {{{', '.join(_quote(v) for v in sorted(self.values))}}}"


@dataclass(frozen=True)
class Contains(Node):
    key: str
    value: str

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        value = labels.get(self.key)
        return value is not None and self.value in value

    def __str__(self) -> str:
        return f"{self.key} contains {_quote(self.value)}"


@dataclass(frozen=True)
class StartsWith(Node):
    key: str
    value: str

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        value = labels.get(self.key)
        return value is not None and value.startswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} starts with {_quote(self.value)}"


@dataclass(frozen=True)
class EndsWith(Node):
    key: str
    value: str

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        value = labels.get(self.key)
        return value is not None and value.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} ends with {_quote(self.value)}"


@dataclass(frozen=True)
class Not(Node):
    operand: Node

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        return not self.operand.match(labels, namespaced)

    def uses_global(self) -> bool:
        return self.operand.uses_global()

    def __str__(self) -> str:
        return f"!{self.operand._child_str()}"


@dataclass(frozen=True)
class And(Node):
    operands: tuple[Node, ...]

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        return all(op.match(labels, namespaced) for op in self.operands)

    def uses_global(self) -> bool:
        return any(op.uses_global() for op in self.operands)

    def __str__(self) -> str:
        return " && ".join(op._child_str() for op in self.operands)

    def _child_str(self) -> str:
        return f"({self})"


@dataclass(frozen=True)
class Or(Node):
    operands: tuple[Node, ...]

    def match(self, labels: Mapping[str, str], namespaced: bool | None = None) -> bool:
        return any(op.match(labels, namespaced) for op in self.operands)

    def uses_global(self) -> bool:
        return any(op.uses_global() for op in self.operands)

    def __str__(self) -> str:
        return " || ".join(op._child_str() for op in self.operands)

    def _child_str(self) -> str:
        return f"({self})"


ALL = All()

# --------------------------------------------------------------------------------------------
# Tokenizer

_WHITESPACE = " \t"
_LABEL_RE = re.compile(r"[a-zA-Z0-9_./-]{1,512}")


@dataclass(frozen=True)
class Token:
    kind: str  # label, string, op, (, ), {, }, ",", has, all, global, eof
    value: str = ""
    pos: int = 0


_SIMPLE = {"(": "(", ")": ")", "{": "{", "}": "}", ",": ","}


def tokenize(text: str) -> list[Token]:
    """Split a Calico selector into tokens; the last one has kind ``eof``.

    Raises:
        SelectorError: on characters Calico's tokenizer rejects (with the column).
    """
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append(Token("eof", "", i))
            return tokens
        c = text[i]
        last = tokens[-1].kind if tokens else ""
        if c in _SIMPLE:
            tokens.append(Token(_SIMPLE[c], c, i))
            i += 1
        elif c in "'\"":
            end = text.find(c, i + 1)
            if end < 0:
                raise SelectorError(f"unterminated string at column {i + 1}")
            tokens.append(Token("string", text[i + 1 : end], i))
            i = end + 1
        elif text.startswith("==", i):
            tokens.append(Token("op", "==", i))
            i += 2
        elif text.startswith("!=", i):
            tokens.append(Token("op", "!=", i))
            i += 2
        elif c == "!":
            tokens.append(Token("!", "!", i))
            i += 1
        elif text.startswith("&&", i):
            tokens.append(Token("&&", "&&", i))
            i += 2
        elif text.startswith("||", i):
            tokens.append(Token("||", "||", i))
            i += 2
        elif c in "=&|":
            raise SelectorError(f"expected {c}{c} at column {i + 1}")
        elif last == "label":
            i = _operator_word(text, i, tokens)
        elif text.startswith("has(", i):
            j = _skip_ws(text, i + 4)
            m = _LABEL_RE.match(text, j)
            if not m:
                raise SelectorError(f"no label name in has( at column {i + 1}")
            j = _skip_ws(text, m.end())
            if not text.startswith(")", j):
                raise SelectorError(f"no closing ')' after has( at column {i + 1}")
            tokens.append(Token("has", m.group(), i))
            i = j + 1
        elif text.startswith("all(", i) or text.startswith("global(", i):
            word = "all" if c == "a" else "global"
            j = _skip_ws(text, i + len(word) + 1)
            if not text.startswith(")", j):
                raise SelectorError(f"no closing ')' after {word}( at column {i + 1}")
            tokens.append(Token(word, word, i))
            i = j + 1
        else:
            m = _LABEL_RE.match(text, i)
            if not m:
                raise SelectorError(f"unexpected character {c!r} at column {i + 1}")
            tokens.append(Token("label", m.group(), i))
            i = m.end()


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def _operator_word(text: str, i: int, tokens: list[Token]) -> int:
    """After a label: ``contains``, ``starts with``, ``ends with``, ``in``, ``not in``."""
    label = tokens[-1].value
    for first, second, op in (
        ("contains", "", "contains"),
        ("starts", "with", "starts with"),
        ("ends", "with", "ends with"),
        ("not", "in", "not in"),
        ("in", "", "in"),
    ):
        if not text.startswith(first, i):
            continue
        j = i + len(first)
        if second:
            j = _skip_ws(text, j)
            if not text.startswith(second, j):
                break
            j += len(second)
        tokens.append(Token("op", op, i))
        return j
    raise SelectorError(
        f"unexpected characters after label {label!r} at column {i + 1}, expected an operator"
    )


# --------------------------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def error(self, message: str, tok: Token | None = None) -> SelectorError:
        tok = tok or self.peek()
        where = "end of selector" if tok.kind == "eof" else f"column {tok.pos + 1}"
        return SelectorError(f"{message} at {where}")

    def parse(self) -> Node:
        if self.peek().kind == "eof":
            return ALL
        node = self.or_expr()
        if self.peek().kind != "eof":
            raise self.error(f"unexpected {self.peek().value or self.peek().kind!r}")
        return node

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.peek().kind == "||":
            self.take()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.operation()]
        while self.peek().kind == "&&":
            self.take()
            operands.append(self.operation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def operation(self) -> Node:
        negated = False
        while self.peek().kind == "!":
            self.take()
            negated = not negated
        tok = self.take()
        node: Node
        if tok.kind == "has":
            node = Has(tok.value)
        elif tok.kind == "all":
            node = ALL
        elif tok.kind == "global":
            node = Global()
        elif tok.kind == "(":
            node = self.or_expr()
            if self.peek().kind != ")":
                raise self.error("expected )")
            self.take()
        elif tok.kind == "label":
            node = self.comparison(tok.value)
        elif tok.kind == "eof":
            raise self.error("unexpected end of selector", tok)
        else:
            raise self.error(f"unexpected {tok.value!r}", tok)
        return Not(node) if negated else node

    def comparison(self, key: str) -> Node:
        op = self.take()
        if op.kind != "op":
            raise self.error(f"expected an operator after label {key!r}", op)
        if op.value in ("in", "not in"):
            if self.take().kind != "{":
                raise self.error("expected set literal {...}")
            values: list[str] = []
            while self.peek().kind == "string":
                values.append(self.take().value)
                if self.peek().kind != ",":
                    break
                self.take()
            if self.peek().kind != "}":
                raise self.error("expected }")
            self.take()
            return In(key, frozenset(values)) if op.value == "in" else NotIn(key, frozenset(values))
        lit = self.take()
        if lit.kind != "string":
            raise self.error("expected a quoted string", lit)
        cls = {
            "==": Eq,
            "!=": Ne,
            "contains": Contains,
            "starts with": StartsWith,
            "ends with": EndsWith,
        }[op.value]
        return cls(key, lit.value)


_PARSE_CACHE: dict[str, Node] = {}


def parse_selector(text: str | None) -> Node:
    """Parse a Calico selector; ``None`` or ``""`` is ``all()``.

    Raises:
        SelectorError: when Calico would reject the selector; the message names the column.

    Examples:
        >>> parse_selector("!has(x)").match({})
        True
        >>> parse_selector("env != 'prod'").match({})   # absent key matches !=
        True
    """
    if not text:
        return ALL
    if not isinstance(text, str):
        raise SelectorError(f"a selector must be a string, not {type(text).__name__}")
    node = _PARSE_CACHE.get(text)
    if node is None:
        node = _Parser(text).parse()
        if len(_PARSE_CACHE) < 100_000:
            _PARSE_CACHE[text] = node
    return node


# --------------------------------------------------------------------------------------------
# Kubernetes LabelSelector

_K8S_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def label_selector_problems(sel: Any, path: str) -> list[str]:
    """What the API server would reject in a ``metav1.LabelSelector`` (empty list when fine)."""
    problems: list[str] = []
    if sel is None:
        return problems
    if not isinstance(sel, Mapping):
        return [f"{path}: a label selector must be a mapping"]
    for key in sel:
        if key not in ("matchLabels", "matchExpressions"):
            problems.append(f"{path}: unknown field {key!r}")
    labels = sel.get("matchLabels")
    if labels is not None:
        if not isinstance(labels, Mapping):
            problems.append(f"{path}.matchLabels: must be a mapping")
        else:
            for k, v in labels.items():
                if not is_label_key(str(k)):
                    problems.append(f"{path}.matchLabels: invalid label key {k!r}")
                if v is not None and not isinstance(v, str | int | float | bool):
                    problems.append(f"{path}.matchLabels.{k}: value must be a string")
                elif not is_label_value("" if v is None else _scalar(v)):
                    problems.append(f"{path}.matchLabels.{k}: invalid label value {v!r}")
    exprs = sel.get("matchExpressions")
    if exprs is not None:
        if not isinstance(exprs, Sequence) or isinstance(exprs, str):
            problems.append(f"{path}.matchExpressions: must be a list")
        else:
            for i, expr in enumerate(exprs):
                where = f"{path}.matchExpressions[{i}]"
                if not isinstance(expr, Mapping):
                    problems.append(f"{where}: must be a mapping")
                    continue
                op = expr.get("operator")
                values = expr.get("values")
                if not expr.get("key") or not is_label_key(str(expr.get("key"))):
                    problems.append(f"{where}.key: missing or invalid label key")
                if op not in _K8S_OPERATORS:
                    problems.append(
                        f"{where}.operator: {op!r} is not a valid selector operator "
                        f"(In, NotIn, Exists, DoesNotExist)"
                    )
                elif op in ("In", "NotIn") and not values:
                    problems.append(f"{where}.values: must be non-empty for operator {op}")
                elif op in ("Exists", "DoesNotExist") and values:
                    problems.append(f"{where}.values: must be empty for operator {op}")
                if values is not None and (
                    not isinstance(values, Sequence) or isinstance(values, str)
                ):
                    problems.append(f"{where}.values: must be a list")
    return problems


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def from_label_selector(sel: Any) -> Node:
    """Convert a Kubernetes ``metav1.LabelSelector`` mapping to a selector node.

    ``None`` and ``{}`` select everything. ``NotIn`` and ``DoesNotExist`` match objects without
    the key, as in Kubernetes.

    Raises:
        SelectorError: for a selector the API server rejects (unknown operator, bad values).

    Examples:
        >>> str(from_label_selector({"matchLabels": {"app": "db"},
        ...     "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}))
        "app == 'db' && tier not in {'x'}"
    """
    if sel is None:
        return ALL
    problems = label_selector_problems(sel, "selector")
    if problems:
        raise SelectorError("; ".join(problems))
    parts: list[Node] = []
    for k, v in sorted((sel.get("matchLabels") or {}).items()):
        parts.append(Eq(str(k), "" if v is None else _scalar(v)))
    for expr in sel.get("matchExpressions") or []:
        key = str(expr["key"])
        op = expr["operator"]
        values = frozenset(_scalar(v) for v in expr.get("values") or [])
        if op == "In":
            parts.append(In(key, values))
        elif op == "NotIn":
            parts.append(NotIn(key, values))
        elif op == "Exists":
            parts.append(Has(key))
        else:
            parts.append(Not(Has(key)))
    if not parts:
        return ALL
    return parts[0] if len(parts) == 1 else And(tuple(parts))
