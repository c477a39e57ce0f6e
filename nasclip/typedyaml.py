"""Typed YAML: turn a YAML document into a frozen dataclass tree, or explain why not.

Shared by the config file and model manifests. Each dataclass field is a
setting with a default (or none: required) and a one-line help text. Problems
are collected, not raised one at a time, so a person fixing a file sees every
mistake at once, each as ``file:line: key.path: what is wrong (hint)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

import yaml

from .paths import config_relative

T = TypeVar("T")


class Octal(int):
    """Permission bits: YAML 0660 (an octal literal) or a string such as "0660" or "0o660"."""

    def __repr__(self) -> str:
        return f"0{self:o}"


def setting(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field carrying its one-line help text."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata={"help": help}, **kwargs)


def internal(default: Any = None) -> Any:
    """A dataclass field that is not read from YAML (e.g. where the file came from)."""
    return field(default=default, compare=False, metadata={"internal": True})


def is_section(tp: Any) -> bool:
    """True for a nested settings dataclass type."""
    return dataclasses.is_dataclass(tp) and isinstance(tp, type)


def hints(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass."""
    return typing.get_type_hints(cls)


_KEY_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def find_node(root: yaml.Node | None, where: str) -> yaml.Node | None:
    """The value node at a key path such as 'shares[1].name', or the deepest one found on the way."""
    node = root
    for index, key in _KEY_PART.findall(where):
        child = None
        if index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            child = node.value[int(index)]
        elif key and isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if child is None:
            break
        node = child
    return node


class Problems:
    """Located problems, collected so that a person sees them all at once.

    Problems found after parsing (cross-field checks pass node=None) are
    located through the document's node tree, so every message has a line.
    """

    def __init__(self, source: str, root: yaml.Node | None = None) -> None:
        self.source = source
        self.root = root
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, where: str, message: str) -> None:
        if node is None:
            node = find_node(self.root, where)
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        self.items.append(f"{self.source}{line}: {where}: {message}")


# Bounds of every YAML file nasclip reads (config, model manifests, the registry): real
# ones are a few kB and a few levels deep. Without them a 100,000-deep document is a raw
# RecursionError and a 72 MB one costs a minute and 750 MB before any error is shown.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 32


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_YAML_DEPTH while composing (which recurses)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def compose_yaml(text: str) -> yaml.Node | None:
    """The node tree of a YAML document within the size and depth bounds (yaml.YAMLError if not)."""
    if len(text) > MAX_YAML_BYTES or len(text.encode("utf-8", "surrogateescape")) > MAX_YAML_BYTES:
        raise yaml.YAMLError(str(YamlTooLarge()))
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class YamlTooLarge(OSError):
    """A YAML file beyond MAX_YAML_BYTES: an OSError, so that readers report it as a file they cannot read."""

    def __str__(self) -> str:
        return f"larger than {MAX_YAML_BYTES // 1024} KiB, the most nasclip reads of a YAML file"


def read_yaml_file(path: Path) -> str:
    """A YAML file's text, reading no more than just past MAX_YAML_BYTES (raises OSError, UnicodeDecodeError)."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise YamlTooLarge()
    return data.decode("utf-8")


_SCALAR_LOADER = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> Any:
    return _SCALAR_LOADER.construct_object(node, deep=True)


def type_name(tp: Any) -> str:
    """How a type is described to a person."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) if a is not type(None) else "null" for a in typing.get_args(tp))
    names = {Octal: "octal permission bits", Path: "a path", str: "a string", bool: "true or false",
             int: "a whole number", float: "a number"}
    if tp in names:
        return names[tp]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    if is_section(tp):
        return "a mapping of settings"
    return str(tp)


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    value = _scalar(node)
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _convert(tp: Any, node: yaml.Node, where: str, base: Path, problems: Problems) -> Any:
    """One YAML node as a value of type tp, or MISSING after recording the problem."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(args[0], node, where, base, problems)
    if is_section(tp):
        if not isinstance(node, yaml.MappingNode):
            problems.add(node, where, f"expected a mapping of settings, got {_describe(node)}")
            return dataclasses.MISSING
        return _build(tp, node, where, base, problems)
    if origin is tuple:
        item_type = typing.get_args(tp)[0]
        if not isinstance(node, yaml.SequenceNode):
            problems.add(node, where, f"expected a list ('- item' lines or [a, b]), got {_describe(node)}")
            return dataclasses.MISSING
        items = tuple(_convert(item_type, n, f"{where}[{i}]", base, problems) for i, n in enumerate(node.value))
        return dataclasses.MISSING if dataclasses.MISSING in items else items
    if not isinstance(node, yaml.ScalarNode):
        problems.add(node, where, f"expected {type_name(tp)}, got {_describe(node)}")
        return dataclasses.MISSING
    value = _scalar(node)
    if tp is Octal:
        try:
            bits = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value), 8)
        except ValueError:
            bits = -1
        if not 0 <= bits <= 0o7777:
            problems.add(node, where, f"expected permission bits in octal such as 0660, got {_describe(node)}")
            return dataclasses.MISSING
        return Octal(bits)
    if origin is Literal:
        if value not in typing.get_args(tp):
            problems.add(node, where, f"{value!r} is not allowed; use {type_name(tp)}")
            return dataclasses.MISSING
        return value
    ok = {
        Path: lambda v: isinstance(v, str) and v != "",
        str: lambda v: isinstance(v, str),
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    }[tp]
    if not ok(value):
        quote = " (put it in quotes)" if tp is str else ""
        problems.add(node, where, f"expected {type_name(tp)}, got {_describe(node)}{quote}")
        return dataclasses.MISSING
    if tp is Path:
        return config_relative(base, value)
    return float(value) if tp is float else value


def _build(cls: type, node: yaml.MappingNode, where: str, base: Path, problems: Problems) -> Any:
    """Dataclass cls from a mapping node; unknown, repeated, missing and mistyped keys are recorded."""
    types_ = hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node)
        path = f"{where}.{key}" if where else str(key)
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known)
            problems.add(key_node, path, f"unknown key ({hint})")
        elif key in values:
            problems.add(key_node, path, "given twice")
        else:
            values[key] = _convert(types_[key], value_node, path, base, problems)
    for name, f in known.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in values and required:
            problems.add(node, f"{where}.{name}" if where else name,
                         f"missing: {f.metadata.get('help', 'required')}")
            values[name] = dataclasses.MISSING
    if dataclasses.MISSING in values.values():
        return dataclasses.MISSING
    return cls(**values)


def parse_yaml(cls: type[T], text: str, source: Path, error: Callable[[str], Exception],
               check: Callable[[T, Problems], None] | None = None) -> T:
    """Parse text (read from source) into cls; raise error(message) listing every problem.

    Relative paths resolve against the folder of source. ``check`` adds
    cross-field problems once the types are right.
    """
    try:
        root = compose_yaml(text)
    except yaml.YAMLError as exc:
        # An unclosed bracket or quote is noticed far below it: point at where it starts.
        mark = getattr(exc, "problem_mark", None)
        context = getattr(exc, "context", None) or ""
        unclosed = ("flow" in context or "quoted" in context) and getattr(exc, "context_mark", None)
        start = exc.context_mark if unclosed else mark  # type: ignore[attr-defined]
        line = f":{start.line + 1}" if start is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        if unclosed and mark is not None:
            reason = f"{context} that starts here: {reason} (line {mark.line + 1})"
        raise error(f"{source}{line}: not valid YAML: {reason}") from None
    if root is None:
        raise error(f"{source}: the file is empty")
    if not isinstance(root, yaml.MappingNode):
        raise error(f"{source}:{root.start_mark.line + 1}: expected a mapping of 'key: value' lines")
    problems = Problems(str(source), root)
    value = _build(cls, root, "", source.parent.absolute(), problems)
    if value is not dataclasses.MISSING and check is not None:
        check(value, problems)
    if problems.items:
        raise error("\n".join(problems.items))
    return value


def iter_settings(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field]]:
    """Every setting as (dotted key, field); sections flattened, list items as 'key[].sub'."""
    types_ = hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        key = f"{prefix}{f.name}"
        tp = types_[f.name]
        yield key, f
        if is_section(tp):
            yield from iter_settings(tp, key + ".")
        elif typing.get_origin(tp) is tuple and is_section(typing.get_args(tp)[0]):
            yield from iter_settings(typing.get_args(tp)[0], key + "[].")


def to_plain(value: Any) -> Any:
    """A dataclass tree as plain YAML-able data (paths as strings)."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("internal")}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Octal):
        return repr(value)
    return value


def _flow(value: Any) -> str:
    """A plain value as one line of YAML (flow style)."""
    text = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=1 << 20).strip()
    return text[1:-1]


def to_commented_yaml(value: Any, indent: str = "", first: str = "") -> list[str]:
    """A dataclass tree as YAML lines, each setting followed by its help; '(default)' marks untouched ones.

    The result loads back into the same tree.
    """
    lines: list[str] = []
    types_ = hints(type(value))
    for f in dataclasses.fields(value):
        if f.metadata.get("internal"):
            continue
        item, lead = getattr(value, f.name), first or indent
        first = ""
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        note = f.metadata.get("help", "")
        tp = types_[f.name]
        if is_section(tp):
            lines.append(f"{lead}{f.name}:".ljust(39) + f" # {note}")
            lines += to_commented_yaml(item, indent + "  ")
        elif typing.get_origin(tp) is tuple and is_section(typing.get_args(tp)[0]):
            lines.append(f"{lead}{f.name}:".ljust(39) + f" # {note}")
            for element in item:
                lines += to_commented_yaml(element, indent + "    ", first=indent + "  - ")
        else:
            note += " (default)" if item == default else ""
            lines.append(f"{lead}{f.name}: {_flow(to_plain(item))}".ljust(39) + f" # {note}")
    return lines
