"""Typed, ranged hyper-parameters: declared once, checked before any work, refused in one line.

A method declares its hyper-parameters as keyword arguments of ``__init__`` (scikit-learn style),
annotated with their type and range through :class:`typing.Annotated` and pydantic's ``Field``::

    def __init__(self, beta: PositiveFloat = 0.1, formulation: Literal["standard", "zjuklab"] = "standard",
                 **training): ...

The training loop's settings (:class:`harness.training.loop.TrainSettings`) are annotated the same
way. A parameter without an annotation (a plugin written before this) is typed from its default:
``bool``, ``int``, ``float`` (finite), ``str``, a list, or anything when the default is ``None``.

:func:`validate_params` checks every value against its declaration with pydantic in strict mode (no
``"fast"`` for a number, no ``true`` for a number, no ``1.5`` for an integer; an integer is accepted
for a float and converted) and every float must be finite. A refusal is one line naming where the
value came from, the key, the value and what is allowed::

    --set: learning_rate = -1 is not allowed; expected a finite number > 0
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Mapping, Union

from pydantic import AllowInfNan, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import ConfigError

# -- shorthand declarations -------------------------------------------------------------------------
Finite = Annotated[float, AllowInfNan(False)]
PositiveFloat = Annotated[float, AllowInfNan(False), Field(gt=0)]
NonNegativeFloat = Annotated[float, AllowInfNan(False), Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
#: A seed numpy, torch and Python's ``random`` all accept.
Seed = Annotated[int, Field(ge=0, lt=2 ** 32)]

_STRICT = ConfigDict(strict=True)


# -- describing a declaration in words ------------------------------------------------------------
def _flat(metadata: list[Any]) -> list[Any]:
    out = []
    for m in metadata:
        out.append(m)
        out.extend(_flat(list(getattr(m, "metadata", []) or [])))  # a FieldInfo carries annotated_types objects
    return out


def _bounds(metadata: list[Any]) -> list[str]:
    items = _flat(metadata)
    found = {attr: getattr(m, attr) for m in items for attr in ("gt", "ge", "lt", "le", "min_length", "max_length")
             if getattr(m, attr, None) is not None}
    out = []
    if "min_length" in found and found.get("min_length") == found.get("max_length"):
        out.append(f"of {found.pop('min_length')} items")
        found.pop("max_length")
    for attr, op in (("min_length", "of at least"), ("max_length", "of at most")):
        if attr in found:
            out.append(f"{op} {found[attr]} items")
    for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if attr in found:
            value = found[attr]
            out.append(f"{op} {value:g}" if isinstance(value, float) else f"{op} {value}")
    return out


def describe(annotation: Any) -> str:
    """What ``annotation`` allows, in words (``a finite number > 0``, ``one of 'lora', 'full'``)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        bounds = _bounds(metadata)
        if base is str and bounds == ["of at least 1 items"]:
            return "a non-empty string"
        if _is_sequence(base):  # the bounds are the list's length: "a list of 2 items, each a number"
            args = typing.get_args(base)
            size = "a non-empty list" if bounds == ["of at least 1 items"] else " ".join(["a list", *bounds])
            return f"{size}, each {describe(args[0])}" if args else size
        text = describe(base)
        return f"{text} {' and '.join(bounds)}" if bounds else text
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        parts = [describe(a) for a in typing.get_args(annotation)]
        return " or ".join(dict.fromkeys(parts))  # a list and a tuple read the same
    if _is_sequence(annotation):
        args = typing.get_args(annotation)
        return f"a list, each {describe(args[0])}" if args else "a list"
    if origin is dict or annotation is dict:
        return "a table (mapping)"
    return {type(None): "null", bool: "true or false", int: "an integer", float: "a finite number",
            str: "a string", Any: "any value"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _is_sequence(annotation: Any) -> bool:
    import collections.abc

    return typing.get_origin(annotation) in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple)


# -- one parameter ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    name: str
    annotation: Any
    default: Any = None

    @property
    def allowed(self) -> str:
        return describe(self.annotation)

    def validate(self, value: Any, source: str = "") -> Any:
        """The value, checked (and an int converted for a float); :class:`ConfigError` otherwise."""
        try:
            return _adapter(self.annotation).validate_python(value)
        except ValidationError:
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}{self.name} = {_show(value)} is not allowed; expected {self.allowed}") from None


def _show(value: Any) -> str:
    """The value as the user wrote it (TOML/JSON spelling for booleans and null)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, (list, dict)):  # as written in --set or TOML: [1,2]
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=True)
        except (TypeError, ValueError):
            text = repr(value)
    else:
        text = repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


_ADAPTERS: dict[Any, TypeAdapter] = {}


def _finite_floats(annotation: Any) -> Any:
    """Every bare ``float`` inside ``annotation`` made finite (a NaN or infinite value never trains)."""
    if annotation is float:
        return Finite
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        if base is float and not any(isinstance(m, AllowInfNan) for m in metadata):
            return Annotated[(float, AllowInfNan(False), *metadata)]  # type: ignore[misc]
        return annotation
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        return Union[tuple(_finite_floats(a) for a in typing.get_args(annotation))]  # type: ignore[misc]
    return annotation


def _adapter(annotation: Any) -> TypeAdapter:
    key = repr(annotation)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(_finite_floats(annotation), config=_STRICT)
    return _ADAPTERS[key]


def inferred(default: Any) -> Any:
    """The type a parameter declared without annotation gets from its default."""
    if default is None:
        return Any
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, str):
        return str
    if isinstance(default, (list, tuple)):
        return list
    if isinstance(default, dict):
        return dict
    return Any


# -- collecting declarations ----------------------------------------------------------------------
def _hints(fn: Callable) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # a name that cannot be resolved: fall back to the defaults' types
        return {}


def specs_from_init(cls: type, stop: type | None = None) -> dict[str, ParamSpec]:
    """Every keyword parameter of the ``__init__`` methods along ``cls``'s MRO (up to ``stop``)."""
    out: dict[str, ParamSpec] = {}
    for klass in cls.__mro__:
        if klass is stop or klass is object:
            break
        init = vars(klass).get("__init__")
        if init is None:
            continue
        hints = _hints(init)
        for name, p in inspect.signature(init).parameters.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in out:
                continue
            default = None if p.default is inspect.Parameter.empty else p.default
            annotation = hints.get(name, Any)
            if annotation is Any or annotation is inspect.Parameter.empty:
                annotation = inferred(default)
            out[name] = ParamSpec(name, annotation, default)
    return out


def specs_from_dataclass(cls: type) -> dict[str, ParamSpec]:
    """The fields of a settings dataclass (``TrainSettings``) as parameters."""
    hints = _hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        annotation = hints.get(f.name, Any)
        out[f.name] = ParamSpec(f.name, inferred(default) if annotation is Any else annotation, default)
    return out


def method_specs(cls: type) -> dict[str, ParamSpec]:
    """A method class's parameter declarations (its ``param_specs()`` when it has one)."""
    specs = getattr(cls, "param_specs", None)
    return specs() if callable(specs) else specs_from_init(cls)


def validate_params(cls: type, values: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``values`` checked against ``cls``'s declarations; the first bad one raises :class:`ConfigError`
    naming its source (``sources[key]``: ``--set``, a file, ``preset X``, ``defaults``)."""
    specs = method_specs(cls)
    out = dict(values)
    for key, value in values.items():
        spec = specs.get(key)
        if spec is not None:
            out[key] = spec.validate(value, (sources or {}).get(key, ""))
    return out



# -- run config files (``unlearnbench run CONFIG``) ----------------------------------------------------
NonEmptyStr = Annotated[str, Field(min_length=1)]

#: The keys of a run config file and what each allows. The ones that also land in ``config.json``
#: (:class:`harness.core.records.RunConfig`) keep its names and meaning, with the ranges a user's
#: file must respect (a seed every RNG accepts, a dtype the loader knows, ``evaluate`` a boolean).
RUN_FILE_FIELDS: dict[str, Any] = {
    "method": NonEmptyStr,
    "model": NonEmptyStr,
    "data": NonEmptyStr,
    "out": NonEmptyStr,
    "benchmark": Union[NonEmptyStr, None],
    "params": dict,
    "eval": dict,
    "mia": Union[NonEmptyStr, None],
    "seed": Seed,
    "device": NonEmptyStr,
    "dtype": Literal["float32", "bfloat16", "float16"],
    "label": Union[NonEmptyStr, None],
    "evaluate": bool,
}


def validate_run_file(cfg: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A run config file's top-level values checked (types, ranges); unknown keys are the caller's."""
    for key, value in cfg.items():
        annotation = RUN_FILE_FIELDS.get(key)
        if annotation is not None:
            ParamSpec(key, annotation).validate(value, source)
    return dict(cfg)


__all__ = ["ParamSpec", "describe", "validate_params", "validate_run_file", "RUN_FILE_FIELDS", "method_specs", "specs_from_init", "specs_from_dataclass",
           "inferred", "Finite", "PositiveFloat", "NonNegativeFloat", "PositiveInt", "NonNegativeInt", "Seed", "NonEmptyStr"]
