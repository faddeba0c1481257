"""Notebook parameters: the papermill `parameters` cell is their one declaration.

Each notebook declares every parameter once, with its type, default and meaning, in the cell tagged
`parameters`:

    # %% tags=["parameters"]
    profile: str = "demo"  # smoke | demo | real | paper
    batch_sizes: list[int] = [16, 32, 64, 128]  # global batch of the tuning runs

`notebook_parameters(globals())`, called right after that cell, turns the annotations into a frozen
dataclass (lists become tuples) and parses the current values into it, so values that papermill's `-p`
passes as strings get the declared type, and one that does not parse is an error naming the parameter.
A parameter that papermill injected but the cell does not declare is an error too. The runner
(`stars.notebooks`) reads the same cell from the notebook's source (`declared_parameters`) to check
`--set` values before any kernel starts.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import tokenize
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stars.config import ConfigError, from_dict, parse_value

# The types a parameter may be declared with (the ones papermill and YAML can pass).
_SCALARS = {"str": str, "int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class Declared:
    """One declared parameter: its field type (lists as tuples), default value and help comment."""

    name: str
    type: Any
    default: Any
    help: str = ""


def field_type(tp: Any, name: str = "") -> Any:
    """The dataclass field type of a declared annotation: str/int/float/bool, or list[X] / tuple[X, ...]
    of one of those (as tuple[X, ...], so the config stays frozen and hashable). String annotations
    (`from __future__ import annotations`) are read without evaluating them."""
    if isinstance(tp, str):
        try:
            tp = _annotation(ast.parse(tp, mode="eval").body, name)
        except SyntaxError:
            raise ConfigError(f"parameter {name!r}: annotation {tp!r} is not a type") from None
    if tp in _SCALARS.values():
        return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple) and args and args[0] in _SCALARS.values() and (
        origin is list and len(args) == 1 or origin is tuple and args[1:] == (Ellipsis,)
    ):
        return tuple[args[0], ...]
    raise ConfigError(f"parameter {name!r}: type {tp!r} is not one of str, int, float, bool, list[...] of them")


def _annotation(node: ast.expr, name: str) -> Any:
    """An annotation of the parameters cell, read without evaluating code."""
    if isinstance(node, ast.Name) and node.id in _SCALARS:
        return _SCALARS[node.id]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("list", "tuple"):
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        items = tuple(Ellipsis if isinstance(e, ast.Constant) and e.value is Ellipsis else _annotation(e, name)
                      for e in inner)
        return (list if node.value.id == "list" else tuple)[items if len(items) > 1 else items[0]]
    raise ConfigError(f"parameter {name!r}: annotation {ast.unparse(node)!r} is not str, int, float, bool "
                      "or list[...] of them")


def declared_parameters(cell_source: str) -> dict[str, Declared]:
    """The parameters a `parameters` cell declares: name -> Declared, in order.

    Every statement must be `name: type = literal  # help`; anything else is an error naming its line.
    """
    try:
        tree = ast.parse(cell_source)
    except SyntaxError as err:
        raise ConfigError(f"parameters cell: {err.msg} (line {err.lineno})") from None
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(cell_source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    declared: dict[str, Declared] = {}
    for node in tree.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None):
            raise ConfigError(f"parameters cell line {node.lineno}: declare each parameter as "
                              "`name: type = value  # meaning`")
        name = node.target.id
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise ConfigError(f"parameter {name!r}: the default must be a literal, "
                              f"got {ast.unparse(node.value)!r}") from None
        tp = field_type(_annotation(node.annotation, name), name)
        declared[name] = Declared(name, tp, parse_value(tp, default, name), comments.get(node.lineno, ""))
    return declared


def parameters_cell(notebook: str | Path) -> str:
    """Source of the cell tagged `parameters` of a notebook (jupytext .py or .ipynb)."""
    import jupytext

    path = Path(notebook)
    cells = [c for c in jupytext.read(path).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{path.name}: expected one cell tagged 'parameters', found {len(cells)}")
    return cells[0].source


def parameters_class(declared: Mapping[str, Declared], name: str = "Parameters") -> type:
    """A frozen dataclass with one field per declared parameter (its default as the field's default)."""
    fields = [(d.name, d.type, dataclasses.field(default=d.default)) for d in declared.values()]
    return dataclasses.make_dataclass(name, fields, frozen=True)


def check_values(declared: Mapping[str, Declared], values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """`values` parsed to the declared types; an undeclared name or a value that does not parse is a
    ConfigError naming it. Tuples are returned as lists (what papermill can inject)."""
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ConfigError(f"{where}unknown notebook parameter(s) {unknown}; known: {list(declared)}")
    out = {}
    for key, value in values.items():
        parsed = parse_value(declared[key].type, value, key)
        out[key] = list(parsed) if isinstance(parsed, tuple) else parsed
    return out


def _injected_names(namespace: Mapping[str, Any]) -> set[str]:
    """Names assigned by the cell papermill injected after the parameters cell (it starts with
    "# Parameters"); empty outside a papermill run."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return set()
    for source in reversed(history):
        if isinstance(source, str) and source.lstrip().startswith("# Parameters"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return set()
            return {t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
    return set()


def notebook_parameters(namespace: Mapping[str, Any]):
    """The notebook's parameters as a frozen dataclass, from the annotations of its parameters cell and
    the current values in `namespace` (the notebook's `globals()`).

    Values are parsed to the declared types; an injected parameter the cell does not declare, or a value
    that does not parse, raises ConfigError naming it.
    """
    annotations = namespace.get("__annotations__") or {}
    if not annotations:
        raise ConfigError("no declared parameters: the parameters cell declares each as `name: type = value`")
    types = {name: field_type(annotation, name) for name, annotation in annotations.items()}
    unknown = sorted(_injected_names(namespace) - set(types))
    if unknown:
        raise ConfigError(f"unknown notebook parameter(s) {unknown}; known: {list(types)}")
    missing = sorted(set(types) - set(namespace))
    if missing:
        raise ConfigError(f"parameter(s) {missing} are declared but have no value")
    values = {name: namespace[name] for name in types}
    cls = dataclasses.make_dataclass("Parameters", list(types.items()), frozen=True)
    return from_dict(cls, values)


def require(condition: bool, message: str) -> None:
    """A notebook's own check of its parameters: ConfigError(message) unless `condition`."""
    if not condition:
        raise ConfigError(message)


__all__ = ["Declared", "field_type", "declared_parameters", "parameters_cell", "parameters_class", "check_values",
           "notebook_parameters", "require"]
