"""Reading structured input: UTF-8 text, JSON and YAML within bounds, and typed access to what
they hold.

Every loader of a structured file (flow files, kubectl dumps and the inventory file,
``segmenter.yaml``, ``graph.json``, ``plan.json``, policy manifests, apply's backup manifest)
reads through this module, so that a damaged input is one :class:`~segmenter.errors.InputError`
naming the file and the place inside it, never a traceback or a hang:

- text that is not UTF-8 names the byte offset of the first bad byte;
- JSON and YAML nest at most :data:`MAX_DEPTH` levels: deeper input would exhaust the stack of
  whatever walks it later (Kubernetes objects nest about 15 levels);
- integers of more than 4,300 decimal digits (CPython's integer/text conversion limit,
  ``sys.get_int_max_str_digits``; the same size in any base) are refused where they are read;
- JSON has no NaN or Infinity (RFC 8259 §6), so neither do documents read from YAML; typed
  accessors refuse numbers too large for a float;
- YAML gives JSON's types only, the way Kubernetes reads YAML (sigs.k8s.io/yaml converts it to
  JSON): timestamps stay text, mapping keys are the text of scalars, tags beyond the core
  schema are refused; aliases may not refer to a node that contains them, nor add more nodes
  than the document holds ("billion laughs": go-yaml's alias-ratio rule, written for
  CVE-2019-11253 in Kubernetes, bounds the same thing).

YAML is read event by event from libyaml (PyYAML's ``CParser``, in PyYAML's wheels; the pure
Python parser where it is missing) into plain dicts and lists, without PyYAML's node tree and
constructor: for a large ``kubectl get -o yaml`` dump that is several times faster and holds one
copy of the data instead of three (``benchmarks/inventory_yaml.py``).

:class:`At` is a value with its place in its file; its accessors check a type and raise errors
that read ``plan.json (classes.pci.zones.restricted[0].node): must be a string, not a number``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, NoReturn, TypeVar

import yaml
from yaml import events as ev

from segmenter.errors import InputError, type_name
from segmenter.gcpause import no_gc

MAX_DEPTH: Final = 100
MAX_INT_DIGITS: Final = 4300  # CPython's default sys.get_int_max_str_digits()
# The same magnitude in any base: 10**4300 < 2**14285.
_MAX_INT_BITS: Final = math.ceil(MAX_INT_DIGITS * math.log2(10))
# The nodes a document's aliases add (an alias counts the nodes it stands for) may be at most as
# many as the document's own, or this many when it is small (a hand-written policy reusing an
# anchored port list is fine).
ALIAS_NODES_FLOOR: Final = 100_000
_ALIAS_NODES_HARD: Final = 10**8
_SIZE_CAP: Final = 10**15  # sizes saturate here: a chain of aliases doubles at every step
# Epoch seconds a timestamp can be written for: RFC 3339 has four year digits (0001 to 9999).
MIN_EPOCH: Final = -62135596800.0  # 0001-01-01T00:00:00Z
MAX_EPOCH: Final = 253402300799.0  # 9999-12-31T23:59:59Z

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Bytes and text


def read_bytes(path: str | Path) -> bytes:
    """The bytes of ``path``; InputError naming it when it cannot be read."""
    name = str(path)
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path=name) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", path=name) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=name) from None


def decode_utf8(data: bytes, *, path: str | None, offset: int = 0,
                record: str | None = None) -> str:
    """``data`` as text; InputError naming the byte offset (plus ``offset``) of the first byte
    that is not UTF-8. A UTF-8 byte order mark is dropped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        hint = ""
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = " (the file starts with a UTF-16 byte order mark: convert it to UTF-8)"
        raise InputError(f"not UTF-8 text: byte 0x{bad:02x} at offset {offset + exc.start}"
                         f"{hint}", path=path, record=record) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``path`` (see :func:`decode_utf8`)."""
    return decode_utf8(read_bytes(path), path=str(path))


def line_column(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line} column {column}"


# --------------------------------------------------------------------------------------------
# JSON

_LONG_INT: Final = re.compile(rf"-?\d{{{MAX_INT_DIGITS + 1},}}")


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


class _NotJson(ValueError):
    pass


def parse_json(text: str, *, path: str | None, record: str | None = None) -> Any:
    """One JSON value, checked against the bounds of the module docstring.

    ``record`` names the place of ``text`` in its file when it is a part of it (a line of a
    JSON Lines file); errors inside a whole file name their line and column.
    """
    def where(index: int) -> str:
        return record or line_column(text, index)

    try:
        with no_gc():  # millions of new objects and no cycles: see segmenter.gcpause
            data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        at = f" (column {exc.colno})" if record else ""
        raise InputError(f"malformed JSON: {exc.msg}{at}", path=path,
                         record=record or f"line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"nested deeper than {MAX_DEPTH} levels", path=path,
                         record=record) from None
    except _NotJson as exc:
        raise InputError(str(exc), path=path, record=record) from None
    except ValueError as exc:
        # CPython refuses to convert integers of more than 4,300 digits (CVE-2020-10735).
        found = _LONG_INT.search(text)
        if found is None:
            raise InputError(f"malformed JSON: {exc}", path=path, record=record) from None
        raise InputError(f"an integer of more than {MAX_INT_DIGITS:,} digits",
                         path=path, record=where(found.start())) from None
    if text.count("[") + text.count("{") > MAX_DEPTH:
        with no_gc():
            _check_depth(data, path=path, record=record)
    return data


try:  # a declared dependency; without it every line goes through parse_json
    import orjson  # type: ignore[import-not-found,unused-ignore]

    _fast_loads: Any = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None
# orjson.loads where installed, else None: for readers of millions of lines that call it
# themselves and hand what it refuses to parse_json_line.
fast_json_loads: Any = _fast_loads


def parse_json_line(raw: bytes, *, path: str | None, offset: int = 0,
                    record: str | None = None) -> Any:
    """One line of a JSON Lines file (its bytes, ``offset`` into the file), within the bounds of
    :func:`parse_json`.

    orjson reads it where installed (flow files of millions of lines read about three times
    faster: benchmarks/ingest_flowlogs.py). What orjson refuses -- bytes that are not UTF-8, a
    byte order mark, NaN, integers beyond 64 bits, malformed JSON -- is read again by
    :func:`parse_json`, whose error says what is wrong; nesting is checked as there."""
    if _fast_loads is not None:
        try:
            data = _fast_loads(raw)
        except ValueError:  # orjson.JSONDecodeError
            pass
        else:
            if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
                _check_depth(data, path=path, record=record)
            return data
    return parse_json(decode_utf8(raw, path=path, offset=offset, record=record), path=path,
                      record=record)


def _check_depth(root: Any, *, path: str | None, record: str | None) -> None:
    """Walk containers only, without recursion."""
    stack = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            raise InputError(f"nested deeper than {MAX_DEPTH} levels", path=path, record=record)
        for value in (node.values() if type(node) is dict else node):
            kind = type(value)
            if kind is dict or kind is list:
                push((value, depth + 1))


def load_json(path: str | Path) -> Any:
    """The JSON document of ``path``."""
    return parse_json(read_text(path), path=str(path))


# --------------------------------------------------------------------------------------------
# YAML

_Parser: Any
try:
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]
except ImportError:  # PyYAML built without libyaml: its pure Python parser sends the same events
    from yaml.loader import SafeLoader as _Parser

_RESOLVER: Final = yaml.resolver.Resolver()
_STR: Final = "tag:yaml.org,2002:str"
_SCALAR_TAGS: Final = frozenset({
    _STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge",
    "tag:yaml.org,2002:value"})
_SEQ_TAGS: Final = frozenset({None, "!", "tag:yaml.org,2002:seq"})
_MAP_TAGS: Final = frozenset({None, "!", "tag:yaml.org,2002:map"})
_BOOLS: Final = {"yes": True, "no": False, "true": True, "false": False, "on": True,
                 "off": False}
_CACHE_LIMIT: Final = 200_000


class _Bad(Exception):
    def __init__(self, message: str, mark: Any):
        super().__init__(message)
        self.message = message
        self.mark = mark


def _mark(mark: Any) -> str | None:
    if mark is None:
        return None
    return f"line {mark.line + 1} column {mark.column + 1}"


def _int(text: str, mark: Any) -> int:
    # YAML 1.1 integers as PyYAML reads them: signs, '_' separators, 0b, 0x, 0 (octal),
    # sexagesimal.
    value = text.replace("_", "")
    sign = -1 if value[:1] == "-" else 1
    value = value.lstrip("+-")
    if len(value) > MAX_INT_DIGITS:
        raise _Bad(f"an integer of more than {MAX_INT_DIGITS:,} digits", mark)
    if value == "0":
        return 0
    if value.startswith("0b"):
        number = int(value[2:], 2)
    elif value.startswith("0x"):
        number = int(value[2:], 16)
    elif value.startswith("0"):
        number = int(value, 8)
    elif ":" in value:
        number = 0
        for part in value.split(":"):
            number = number * 60 + int(part)
    else:
        number = int(value)
    if number.bit_length() > _MAX_INT_BITS:
        raise _Bad(f"an integer of more than {MAX_INT_DIGITS:,} digits", mark)
    return sign * number


def _float(text: str, mark: Any) -> float:
    value = text.replace("_", "").lower()
    sign = -1.0 if value[:1] == "-" else 1.0
    value = value.lstrip("+-")
    if value in (".inf", ".nan"):
        raise _Bad(f"{text} is not a finite number (JSON has no NaN or Infinity)", mark)
    if ":" in value:
        number = 0.0
        for part in value.split(":"):
            number = number * 60 + float(part)
    else:
        number = float(value)
    if not math.isfinite(number):
        raise _Bad(f"{text} is too large to represent", mark)
    return sign * number


def _typed_scalar(tag: str, text: str, mark: Any) -> Any:
    if tag == "tag:yaml.org,2002:int":
        return _int(text, mark)
    if tag == "tag:yaml.org,2002:float":
        return _float(text, mark)
    if tag == "tag:yaml.org,2002:bool":
        found = _BOOLS.get(text.lower())
        if found is None:
            raise _Bad(f"{text!r} is not a boolean", mark)
        return found
    if tag == "tag:yaml.org,2002:null":
        return None
    # str, and timestamps kept as text (as Kubernetes reads them); '<<' and '=' outside a key.
    return text


class _Frame:
    __slots__ = ("anchor", "container", "height", "key", "mark", "merges", "size")

    def __init__(self, container: Any, anchor: str | None, mark: Any):
        self.container = container
        self.anchor = anchor
        self.mark = mark
        self.key: Any = _Frame  # _Frame: expecting a key
        self.size = 1
        self.height = 1
        self.merges: list[dict[str, Any]] | None = None


class _Reader:
    """Builds plain Python values from a parser's events, one document at a time."""

    def __init__(self, parser: Any):
        self.parser = parser
        self.cache: dict[str, Any] = {}

    def plain(self, text: str, mark: Any) -> Any:
        cached = self.cache.get(text, self)
        if cached is not self:
            return cached
        tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))
        value = text if tag == _STR else _typed_scalar(tag, text, mark)
        if len(self.cache) < _CACHE_LIMIT:
            self.cache[text] = value
        return value

    def documents(self) -> Iterator[Any]:
        get = self.parser.get_event
        get()  # StreamStartEvent
        while True:
            event = get()
            if type(event) is ev.StreamEndEvent:
                return
            with no_gc():
                document = self.document(get)
            yield document

    def document(self, get: Any) -> Any:
        anchors: dict[str, tuple[Any, int, int]] = {}  # anchor -> (value, size, height)
        stack: list[_Frame] = []
        unique = expanded = 0
        root: Any = None
        scalar_event, alias_event = ev.ScalarEvent, ev.AliasEvent
        mapping_start, sequence_start = ev.MappingStartEvent, ev.SequenceStartEvent
        while True:
            event = get()
            cls = type(event)
            height = 1
            if cls is scalar_event:
                unique += 1
                size = 1
                tag = event.tag
                if tag is None or tag == "!":
                    value = (self.plain(event.value, event.start_mark) if event.implicit[0]
                             else event.value)
                elif tag in _SCALAR_TAGS:
                    value = _typed_scalar(tag, event.value, event.start_mark)
                else:
                    raise _Bad(_tag_message(tag), event.start_mark)
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1, 1)
                if stack and stack[-1].key is _Frame and isinstance(stack[-1].container, dict):
                    # A mapping key: the scalar's text ('80: x' and '"80": x' are one key).
                    frame = stack[-1]
                    if (event.value == "<<" and event.implicit[0]
                            and (tag is None or tag == "!")):
                        frame.key = _Reader  # a merge key: its value is merged at the end
                    else:
                        frame.key = event.value
                    continue
            elif cls is mapping_start or cls is sequence_start:
                unique += 1
                tags = _MAP_TAGS if cls is mapping_start else _SEQ_TAGS
                if event.tag not in tags:
                    raise _Bad(_tag_message(event.tag), event.start_mark)
                if stack and stack[-1].key is _Frame and isinstance(stack[-1].container, dict):
                    raise _Bad("a mapping key must be a scalar", event.start_mark)
                if len(stack) >= MAX_DEPTH:
                    raise _Bad(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
                frame = _Frame({} if cls is mapping_start else [], event.anchor,
                               event.start_mark)
                if event.anchor is not None:
                    anchors[event.anchor] = (frame.container, -1, 0)  # open: no alias yet
                stack.append(frame)
                continue
            elif cls is ev.MappingEndEvent or cls is ev.SequenceEndEvent:
                frame = stack.pop()
                value, size, height = frame.container, frame.size, frame.height
                if frame.merges is not None:
                    _merge(value, frame.merges)
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, size, height)
            elif cls is alias_event:
                found = anchors.get(event.anchor)
                if found is None:
                    raise _Bad(f"undefined alias *{event.anchor}", event.start_mark)
                value, size, height = found
                if size < 0:
                    raise _Bad(f"alias *{event.anchor} refers to a node that contains it",
                               event.start_mark)
                expanded = min(expanded + size, _SIZE_CAP)
                if expanded > _ALIAS_NODES_HARD:  # no document that fits in memory is OK
                    raise _Bad(_alias_message(unique, expanded), event.start_mark)
                if len(stack) + height > MAX_DEPTH:
                    raise _Bad(f"nested deeper than {MAX_DEPTH} levels (through alias "
                               f"*{event.anchor})", event.start_mark)
                if stack and stack[-1].key is _Frame and isinstance(stack[-1].container, dict):
                    if not isinstance(value, str):
                        raise _Bad("a mapping key must be a scalar", event.start_mark)
                    stack[-1].key = value
                    continue
            elif cls is ev.DocumentEndEvent:
                if expanded > max(ALIAS_NODES_FLOOR, unique):
                    raise _Bad(_alias_message(unique, expanded), event.start_mark)
                return root
            else:  # pragma: no cover - the parser sends no other event inside a document
                raise _Bad(f"unexpected YAML event {cls.__name__}", event.start_mark)
            if not stack:
                root = value
                continue
            frame = stack[-1]
            frame.size = min(frame.size + size, _SIZE_CAP)
            frame.height = max(frame.height, height + 1)
            container = frame.container
            if type(container) is list:
                container.append(value)
            elif frame.key is _Reader:
                frame.key = _Frame
                merges = frame.merges if frame.merges is not None else []
                frame.merges = merges
                sources = value if isinstance(value, list) else [value]
                if not all(isinstance(s, dict) for s in sources):
                    raise _Bad("a merge key (<<) needs a mapping or a list of mappings",
                               event.start_mark)
                # Earlier mappings of a list win over later ones (YAML merge key spec).
                merges.extend(reversed(sources))
            else:
                container[frame.key] = value
                frame.key = _Frame


def _merge(mapping: dict[str, Any], merges: list[dict[str, Any]]) -> None:
    explicit = dict(mapping)
    mapping.clear()
    for source in merges:
        mapping.update(source)
    mapping.update(explicit)


def _tag_message(tag: str) -> str:
    short = tag.replace("tag:yaml.org,2002:", "!!")
    return f"YAML tag {short} is not supported here (documents hold JSON's types)"


def _alias_message(unique: int, expanded: int) -> str:
    size = f"{expanded:,}" if expanded < _SIZE_CAP else "more than 10**15"
    return (f"YAML aliases expand this document of {unique:,} nodes by {size} nodes, more than "
            "it holds (a 'billion laughs' document?)")


def iter_yaml(text: str | IO[str], *, path: str | None) -> Iterator[Any]:
    """The documents of a YAML stream, one at a time (empty documents are ``None``)."""
    parser: Any = None
    try:
        parser = _Parser(text)
        yield from _Reader(parser).documents()
    except _Bad as exc:
        raise InputError(exc.message, path=path, record=_mark(exc.mark)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        record = _mark(mark)
        position = getattr(exc, "position", None)
        if record is None and isinstance(position, int):
            record = f"character {position + 1}"  # a ReaderError: no line is known
        raise InputError(f"malformed YAML: {problem}", path=path, record=record) from None
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose is not None:
            dispose()


def parse_yaml(text: str, *, path: str | None) -> list[Any]:
    """Every document of a YAML stream (empty documents are ``None``)."""
    return list(iter_yaml(text, path=path))


def load_yaml(path: str | Path) -> list[Any]:
    """Every document of the YAML file ``path``."""
    return parse_yaml(read_text(path), path=str(path))


# --------------------------------------------------------------------------------------------
# Typed access

_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class At:
    """A value read from a document, with its file and its path inside the document (built only
    for an error message).

    >>> doc = At({"zones": {"restricted": [{"node": 5}]}}, "plan.json")
    >>> doc.need("zones").need("restricted").items()[0].need("node").text()
    Traceback (most recent call last):
    ...
    segmenter.errors.InputError: plan.json (zones.restricted[0].node): must be a string, not \
a number
    """

    __slots__ = ("_parent", "_step", "file", "value")

    def __init__(self, value: Any, file: str | None = None, where: str | None = None, *,
                 _parent: At | None = None, _step: str | int | None = None):
        self.value = value
        self.file = file
        self._parent = _parent
        self._step: str | int | None = where if _parent is None else _step

    @property
    def where(self) -> str:
        """``classes.pci.zones.restricted[0].node``; keys that are not plain words are quoted
        (``labels["app.kubernetes.io/name"]``); after the root's own place when it has one
        (``line 5, client_port``)."""
        steps: list[str | int] = []
        node: At = self
        while node._parent is not None:
            assert node._step is not None
            steps.append(node._step)
            node = node._parent
        out = ""
        for step in reversed(steps):
            if isinstance(step, int):
                out += f"[{step}]"
            elif _PLAIN_KEY.fullmatch(step):
                out += f".{step}" if out else step
            else:
                out += f"[{json.dumps(step)}]"
        base = node._step
        if isinstance(base, str) and base:
            return f"{base}, {out}" if out else base
        return out

    def fail(self, message: str) -> NoReturn:
        raise InputError(message, path=self.file, record=self.where or None)

    def _must(self, what: str) -> NoReturn:
        self.fail(f"must be {what}, not {type_name(self.value)}")

    def key(self, name: str) -> At:
        """The value under ``name`` (None when absent)."""
        return At(self.mapping().get(name), self.file, _parent=self, _step=name)

    def need(self, name: str) -> At:
        """The value under ``name``; an error when it is absent or null."""
        found = self.key(name)
        if found.value is None:
            self.fail(f"missing {name!r}")
        return found

    def has(self, name: str) -> bool:
        return self.mapping().get(name) is not None

    def mapping(self) -> dict[str, Any]:
        if type(self.value) is not dict:
            self._must("an object")
        return self.value

    def entries(self) -> list[tuple[str, At]]:
        """The keys and values of an object, in document order (null: none)."""
        if self.value is None:
            return []
        return [(k, At(v, self.file, _parent=self, _step=k)) for k, v in self.mapping().items()]

    def items(self) -> list[At]:
        """The elements of a list (null: none)."""
        if self.value is None:
            return []
        if type(self.value) is not list:
            self._must("a list")
        return [At(v, self.file, _parent=self, _step=i) for i, v in enumerate(self.value)]

    def text(self) -> str:
        if not isinstance(self.value, str):
            self._must("a string")
        return self.value

    def text_or_none(self) -> str | None:
        return None if self.value is None else self.text()

    def integer(self, low: int | None = None, high: int | None = None) -> int:
        value = self.value
        if type(value) is not int:
            self._must("an integer")
        if low is not None and high is not None and not low <= value <= high:
            self.fail(f"must be an integer from {low} to {high}, not {value}")
        if low is not None and value < low:
            self.fail(f"must be an integer of at least {low}, not {value}")
        if high is not None and value > high:
            self.fail(f"must be an integer of at most {high}, not {value}")
        return value

    def integer_or_none(self, low: int | None = None, high: int | None = None) -> int | None:
        return None if self.value is None else self.integer(low, high)

    def number(self) -> float:
        value = self.value
        if type(value) is not float and type(value) is not int:
            self._must("a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.fail("must be a finite number")
        return number

    def number_or_none(self) -> float | None:
        return None if self.value is None else self.number()

    def epoch(self) -> float:
        """Epoch seconds of a moment that can be written as a timestamp (years 1 to 9999)."""
        seconds = self.number()
        if not MIN_EPOCH <= seconds <= MAX_EPOCH:
            self.fail(f"must be epoch seconds of a year from 1 to 9999, not {self.value}")
        return seconds

    def epoch_or_none(self) -> float | None:
        return None if self.value is None else self.epoch()

    def flag(self) -> bool:
        if type(self.value) is not bool:
            self._must("true or false")
        return self.value

    def texts(self) -> tuple[str, ...]:
        """A list of strings (null: none)."""
        value = self.value
        if type(value) is list and all(type(v) is str for v in value):
            return tuple(value)
        return tuple(item.text() for item in self.items())

    def text_map(self) -> dict[str, str]:
        """An object of strings (null: empty)."""
        value = self.value
        if type(value) is dict and all(type(v) is str for v in value.values()):
            return dict(value)
        return {k: v.text() for k, v in self.entries()}

    def choice(self, allowed: Mapping[str, T]) -> T:
        """One of ``allowed``'s keys, as its value."""
        found = allowed.get(self.value) if isinstance(self.value, str) else None
        if found is None:
            self.fail(f"must be one of {', '.join(sorted(allowed))}, not "
                      f"{_short(self.value)}")
        return found


def _short(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return type_name(value)


__all__ = [
    "MAX_DEPTH",
    "MAX_EPOCH",
    "MAX_INT_DIGITS",
    "MIN_EPOCH",
    "At",
    "decode_utf8",
    "iter_yaml",
    "load_json",
    "load_yaml",
    "parse_json",
    "parse_yaml",
    "read_bytes",
    "read_text",
]
