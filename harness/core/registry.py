"""A small generic registry with lazily loaded entry points.

Our own components register with a decorator (``@register_method("npo")``,
``@register_benchmark("lume")``); other pip packages declare an entry point in the group
``unlearnbench.methods`` (or ``unlearnbench.metrics``, ``unlearnbench.benchmarks``). Both
land in the same :class:`Registry`. Entry points are only imported when their name is asked for
(or when the full listing is requested), so a broken third-party plugin cannot break start-up.
"""

from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from harness.core.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → object mapping for one kind of component.

    ``builtin_modules`` are imported on first lookup so that the decorators in our own packages
    have run; ``entry_point_group`` names the group scanned for third-party plugins.
    """

    def __init__(self, kind: str, entry_point_group: str, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._builtin_modules = builtin_modules
        self._builtins_loaded = False
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._entry_points: dict[str, metadata.EntryPoint] | None = None

    # -- registration ---------------------------------------------------------------------------
    def register(self, name: str, obj: T, origin: str | None = None) -> T:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")
        origin = origin or _describe(obj)
        existing = self._items.get(name)
        if existing is not None and existing is not obj:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: by {self._origins[name]} and by {origin}. "
                "Rename one of them."
            )
        self._items[name] = obj
        self._origins[name] = origin
        return obj

    def decorator(self, name: str) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            self.register(name, obj)
            return obj

        return wrap

    # -- lookup ---------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)

    def _discover(self) -> dict[str, metadata.EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in metadata.entry_points(group=self.entry_point_group)}
        return self._entry_points

    def _load_entry_point(self, name: str) -> T:
        ep = self._discover()[name]
        try:
            obj = ep.load()
        except Exception as exc:  # a plugin's import error must say which plugin
            raise RegistryError(
                f"{self.kind} {name!r} from entry point {ep.value!r} (group {self.entry_point_group}) "
                f"failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        return self.register(name, obj, origin=f"entry point {ep.value}")

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(set(self._items) | set(self._discover()))

    def get(self, name: str) -> T:
        self._load_builtins()
        if name in self._items:
            return self._items[name]
        if name in self._discover():
            return self._load_entry_point(name)
        available = self.names()
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(available) or '(none)'}."
        )

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origins[name]

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def refresh(self) -> None:
        """Forget the cached entry-point scan (after a plugin was installed in this process)."""
        self._entry_points = None
        metadata_cache_clear = getattr(importlib, "invalidate_caches", None)
        if metadata_cache_clear:
            metadata_cache_clear()


def _describe(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}"


METHODS: Registry = Registry(
    "method",
    "unlearnbench.methods",
    builtin_modules=("baselines",),
)
METRICS: Registry = Registry(
    "metric",
    "unlearnbench.metrics",
    builtin_modules=("metrics",),
)


BENCHMARKS: Registry = Registry(
    "benchmark",
    "unlearnbench.benchmarks",
    builtin_modules=("harness.tasks.lume", "harness.tasks.tofu", "harness.tasks.world_tofu", "harness.tasks.muse"),
)


def register_method(name: str):
    """Register an unlearning method class under ``name`` (for code inside this repository)."""
    return METHODS.decorator(name)


def register_metric(name: str):
    """Register a metric (a :class:`harness.core.types.MetricSpec`) under ``name``."""
    return METRICS.decorator(name)


def register_benchmark(name: str):
    """Register a benchmark (a :class:`harness.tasks.base.BenchmarkTask` subclass) under ``name``."""
    def wrap(cls):
        BENCHMARKS.register(name, cls)
        if not cls.__dict__.get("name"):
            cls.name = name
        return cls

    return wrap
