"""The plugin manager and the typed registries the register-hooks fill.

`load_plugins()` is the factory: it builds a pluggy manager for the `tunebench` project, registers
every entry point of the `tunebench` group (tunebench's own built-ins included) plus any modules
named explicitly, refuses implementations of unknown hooks, and asks each plugin to register its
classes. Nothing happens at import time.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pluggy

from harness import hookspecs
from harness.datasets import Dataset
from harness.errors import PluginError, UnknownPluginError
from harness.models import ModelFamily
from harness.strategies import SearchStrategy

PROJECT = "tunebench"
ENTRY_POINT_GROUP = "tunebench"
#: Extra plugin modules to load, comma-separated (like pytest's `-p`), for plugins without a package.
PLUGINS_ENV = "TUNEBENCH_PLUGINS"

hookimpl = pluggy.HookimplMarker(PROJECT)

T = TypeVar("T")


@dataclass(frozen=True)
class PluginInfo(Generic[T]):
    """One registered class and where it came from."""

    kind: str
    name: str
    cls: type[T]
    plugin: str
    package: str
    version: str

    @property
    def summary(self) -> str:
        return self.cls.summary()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Source:
    plugin: str
    package: str
    version: str


class Registry(Generic[T]):
    """Names to classes of one kind (datasets, model families or strategies)."""

    def __init__(self, kind: str, base: type[T]) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, PluginInfo[T]] = {}
        self._source = _Source("<direct>", "-", "-")

    def add(self, cls: type[T]) -> type[T]:
        """Register `cls` under `cls.name`; returns it, so it also works as a decorator."""
        src = self._source
        if not (inspect.isclass(cls) and issubclass(cls, self.base)):
            raise PluginError(f"plugin '{src.plugin}' ({src.package}) registered {cls!r} as a {self.kind}, "
                              f"but it is not a subclass of harness.{self.base.__name__}")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))  # type: ignore[attr-defined]
            raise PluginError(f"plugin '{src.plugin}' ({src.package}) registered {cls.__name__}, which "
                              f"does not implement: {missing}")
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            raise PluginError(f"plugin '{src.plugin}' ({src.package}) registered {cls.__name__} without a "
                              f"valid `name` (a non-empty string without spaces)")
        if name in self._entries:
            other = self._entries[name]
            raise PluginError(f"two plugins register the {self.kind} '{name}': '{other.plugin}' "
                              f"({other.package}, {other.cls.__module__}.{other.cls.__name__}) and "
                              f"'{src.plugin}' ({src.package}, {cls.__module__}.{cls.__name__}). "
                              f"Uninstall one of them or rename one of the classes.")
        self._entries[name] = PluginInfo(self.kind, name, cls, src.plugin, src.package, src.version)
        return cls

    def get(self, name: str) -> type[T]:
        """The class registered as `name`, or an error suggesting close names."""
        return self.info(name).cls

    def info(self, name: str) -> PluginInfo[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownPluginError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = difflib.get_close_matches(str(name), list(self._entries), n=1)
        known = ", ".join(sorted(self._entries)) or "none installed"
        did = f" Did you mean '{hint[0]}'?" if hint else ""
        return f"unknown {self.kind} '{name}'.{did} Known: {known}. See `tunebench plugins`."

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[PluginInfo[T]]:
        return iter(sorted(self._entries.values(), key=lambda i: i.name))

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class Catalog:
    """Everything the installed plugins registered."""

    manager: pluggy.PluginManager
    datasets: Registry[Dataset]
    model_families: Registry[ModelFamily]
    strategies: Registry[SearchStrategy]

    def all(self) -> list[PluginInfo[Any]]:
        return [*self.datasets, *self.model_families, *self.strategies]


def load_plugins(extra: Iterable[str | object] = (), *, entry_points: bool = True) -> Catalog:
    """Build the plugin manager and collect every registered class.

    Args:
        extra: further plugins: dotted module names or objects with hook implementations
            (tests register small inline plugins this way). Modules named in the
            `TUNEBENCH_PLUGINS` environment variable are added too.
        entry_points: load the `tunebench` entry-point group (the built-ins live there).

    Raises:
        PluginError: a plugin fails to import, implements an unknown hook, or two plugins register
            the same name.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[int, _Source] = {}

    def register(plugin: object, name: str, source: _Source) -> None:
        if pm.get_plugin(name) is not None:
            other = sources[id(pm.get_plugin(name))]
            raise PluginError(f"two plugins are named '{name}': one from {other.package} and one from "
                              f"{source.package}. Uninstall one of them.")
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin '{name}' ({source.package}) is not valid: {exc}") from None
        sources[id(plugin)] = source

    if entry_points:
        for ep, dist in _entry_points():
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must say which one it is
                raise PluginError(f"plugin '{ep.name}' from package {dist.metadata['Name']} failed to "
                                  f"import ({ep.value}): {type(exc).__name__}: {exc}") from exc
            register(module, ep.name, _Source(ep.name, dist.metadata["Name"], dist.version))
    env_modules = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for item in [*env_modules, *extra]:
        if isinstance(item, str):
            try:
                plugin: object = importlib.import_module(item)
            except ImportError as exc:
                raise PluginError(f"plugin module '{item}' could not be imported: {exc}") from exc
            name = item
        else:
            plugin, name = item, getattr(item, "__name__", None) or type(item).__name__
        if pm.is_registered(plugin):
            continue
        register(plugin, name, _Source(name, "local", "-"))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("tunebench_")))
        raise PluginError(f"{exc}. tunebench hooks are: {known}") from None

    catalog = Catalog(pm, Registry("dataset", Dataset), Registry("model family", ModelFamily),
                      Registry("search strategy", SearchStrategy))
    _collect(pm, "tunebench_register_datasets", catalog.datasets, sources)
    _collect(pm, "tunebench_register_model_families", catalog.model_families, sources)
    _collect(pm, "tunebench_register_search_strategies", catalog.strategies, sources)
    return catalog


def _entry_points() -> Iterator[tuple[importlib.metadata.EntryPoint, importlib.metadata.Distribution]]:
    seen: set[tuple[str, str]] = set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            # The same distribution can be visible twice on sys.path (e.g. an editable install).
            if ep.group == ENTRY_POINT_GROUP and (dist.metadata["Name"], ep.name) not in seen:
                seen.add((dist.metadata["Name"], ep.name))
                yield ep, dist


def _collect(pm: pluggy.PluginManager, hook_name: str, registry: Registry[Any],
             sources: dict[int, _Source]) -> None:
    """Call each implementation of a register-hook in turn, so every class knows its plugin."""
    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):  # pluggy's call order: last registered first
        registry._source = sources.get(id(impl.plugin), _Source(impl.plugin_name, "local", "-"))
        kwargs = {"registry": registry}
        impl.function(*[kwargs[arg] for arg in impl.argnames])
    registry._source = _Source("<direct>", "-", "-")
