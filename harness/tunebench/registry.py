"""The plugin manager and the typed registries the register-hooks fill.

`load_plugins()` is the factory: it builds a pluggy manager for the `tunebench` project, registers
every entry point of the `tunebench` group (tunebench's own built-ins included) plus any modules
named explicitly, refuses implementations of unknown hooks, and asks each plugin to register its
classes. Nothing happens at import time.

A third-party package whose plugin fails (it does not import, implements a misspelt hook, or its
register hook raises) is left out and reported by its package name (`Catalog.broken`): every other
plugin, and every command, keeps working. `TUNEBENCH_DISABLE_PLUGINS=name,...` (or `--disable-plugin`)
blocks plugins by entry-point or package name; `TUNEBENCH_BUILTIN_PLUGINS_ONLY=1` loads tunebench's
own alone, whatever else is installed (tests use it). A module named explicitly (`--plugin`) that
fails is an error: the user asked for it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import pluggy

from tunebench import hookspecs
from tunebench.datasets import Dataset
from tunebench.errors import DuplicateNameError, PluginError, UnknownPluginError
from tunebench.models import ModelFamily
from tunebench.strategies import SearchStrategy
from tunebench.tables import Table

PROJECT = "tunebench"
ENTRY_POINT_GROUP = "tunebench"
#: The distribution whose entry points are the built-ins.
BUILTIN_PACKAGE = "tunebench"
#: Extra plugin modules to load, comma-separated (like pytest's `-p`), for plugins without a package.
PLUGINS_ENV = "TUNEBENCH_PLUGINS"
#: Plugins not to load, comma-separated entry-point or package names.
DISABLE_ENV = "TUNEBENCH_DISABLE_PLUGINS"
#: Set to 1 to load tunebench's own plugins only (and those named explicitly), whatever is installed.
BUILTIN_ONLY_ENV = "TUNEBENCH_BUILTIN_PLUGINS_ONLY"

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
        summary: str = cast(Any, self.cls).summary()  # every plugin base (Configurable) has one
        return summary


@dataclass(frozen=True)
class _Source:
    plugin: str
    package: str
    version: str


class Registry(Generic[T]):
    """Names to classes of one kind (datasets, model families or strategies)."""

    def __init__(self, kind: str, base: type) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, PluginInfo[T]] = {}
        self._source = _Source("<direct>", "-", "-")
        #: Third-party plugins that failed to load, for the "unknown name" message.
        self.broken: list[BrokenPlugin] = []
        #: Plugins the user disabled, for the same message ("entry point (package)").
        self.disabled: list[str] = []

    def add(self, cls: type[T]) -> type[T]:
        """Register `cls` under `cls.name`; returns it, so it also works as a decorator."""
        src = self._source
        if not (inspect.isclass(cls) and issubclass(cls, self.base)):
            raise PluginError(f"plugin '{src.plugin}' ({src.package}) registered {cls!r} as a {self.kind}, "
                              f"but it is not a subclass of tunebench.{self.base.__name__}")
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
            raise DuplicateNameError(f"two plugins register the {self.kind} '{name}': '{other.plugin}' "
                              f"({other.package}, {other.cls.__module__}.{other.cls.__name__}) and "
                              f"'{src.plugin}' ({src.package}, {cls.__module__}.{cls.__name__}). "
                              f"Change the `name` attribute of one of the two classes (e.g. name = "
                              f"\"{name}_2\"), uninstall one of the packages, or block one plugin with "
                              f"{DISABLE_ENV}={src.plugin}.")
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
        broken = "".join(f" Plugin '{b.name}' from package {b.package} could not be loaded and may provide it "
                         f"({b.error})." for b in self.broken)
        disabled = (f" Disabled, and so not loaded: {', '.join(self.disabled)} (--disable-plugin or {DISABLE_ENV}); "
                    f"one of them may provide it." if self.disabled else "")
        return f"unknown {self.kind} '{name}'.{did} Known: {known}.{broken}{disabled} See `tunebench plugins`."

    def _drop(self, plugin: str) -> None:
        """Forget what one plugin registered (its register hook failed half-way)."""
        self._entries = {n: i for n, i in self._entries.items() if i.plugin != plugin}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[PluginInfo[T]]:
        return iter(sorted(self._entries.values(), key=lambda i: i.name))

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class BrokenPlugin:
    """A third-party plugin that was left out, and why."""

    name: str
    package: str
    version: str
    error: str

    @property
    def warning(self) -> str:
        return (f"plugin '{self.name}' from package {self.package} {self.version} is not loaded: {self.error}. "
                f"Fix or uninstall the package, or block the plugin with {DISABLE_ENV}={self.name} "
                f"(or --disable-plugin {self.name})")


@dataclass
class Catalog:
    """Everything the installed plugins registered."""

    manager: pluggy.PluginManager
    datasets: Registry[Dataset]
    model_families: Registry[ModelFamily]
    strategies: Registry[SearchStrategy]
    tables: Registry[Table] = field(default_factory=lambda: Registry[Table]("table", Table))
    #: Third-party plugins left out because they failed to load.
    broken: list[BrokenPlugin] = field(default_factory=list)
    #: Plugins not loaded because they were disabled (`TUNEBENCH_DISABLE_PLUGINS`, `--disable-plugin`).
    disabled: list[str] = field(default_factory=list)
    #: Names asked to be disabled that match no installed plugin or package (a typo?), and the names
    #: that could have been meant.
    unmatched: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    #: Plugin modules loaded by name besides the entry points (`--plugin`, `TUNEBENCH_PLUGINS`): what
    #: another process needs to load the same plugins.
    modules: tuple[str, ...] = ()
    #: Whether some plugin was given as an object (a test's inline plugin), which no other process
    #: can load: work that needs the plugins then stays in this process.
    inline: bool = False

    def all(self) -> list[PluginInfo[Any]]:
        return [*self.datasets, *self.model_families, *self.strategies, *self.tables]


#: The register hooks, and the catalog registry each one fills.
REGISTER_HOOKS = {"tunebench_register_datasets": "datasets",
                  "tunebench_register_model_families": "model_families",
                  "tunebench_register_search_strategies": "strategies",
                  "tunebench_register_tables": "tables"}


def _names(value: str | None) -> set[str]:
    return {n.strip() for n in (value or "").split(",") if n.strip()}


def load_plugins(extra: Iterable[str | object] = (), *, entry_points: bool = True, builtin_only: bool | None = None,
                 disabled: Iterable[str] = ()) -> Catalog:
    """Build the plugin manager and collect every registered class.

    Args:
        extra: further plugins: dotted module names or objects with hook implementations
            (tests register small inline plugins this way). Modules named in the
            `TUNEBENCH_PLUGINS` environment variable are added too.
        entry_points: load the `tunebench` entry-point group (the built-ins live there).
        builtin_only: load only tunebench's own entry points (default: `TUNEBENCH_BUILTIN_PLUGINS_ONLY`).
        disabled: entry-point or package names not to load, besides `TUNEBENCH_DISABLE_PLUGINS`.

    Raises:
        PluginError: a built-in or explicitly named plugin fails to import, implements an unknown
            hook or raises in its register hook, or two plugins register the same name. A failing
            third-party entry point is not an error: it is left out and listed in `Catalog.broken`.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[int, _Source] = {}
    blocked = _names(os.environ.get(DISABLE_ENV)) | set(disabled)
    if builtin_only is None:
        builtin_only = os.environ.get(BUILTIN_ONLY_ENV, "").strip().lower() in ("1", "true", "yes")
    catalog = Catalog(pm, Registry[Dataset]("dataset", Dataset), Registry[ModelFamily]("model family", ModelFamily),
                      Registry[SearchStrategy]("search strategy", SearchStrategy))

    def register(plugin: object, name: str, source: _Source) -> None:
        if pm.get_plugin(name) is not None:
            other = sources[id(pm.get_plugin(name))]
            raise PluginError(f"two plugins are named '{name}': one from {other.package} and one from "
                              f"{source.package}. Uninstall one of them, or block one with {DISABLE_ENV}={name}.")
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            raise PluginError(f"plugin '{name}' ({source.package}) implements {'; '.join(unknown)}")
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin '{name}' ({source.package}) is not valid: {exc}") from None
        sources[id(plugin)] = source

    matched: set[str] = set()
    if entry_points:
        for ep, dist in _entry_points():
            package = dist.metadata["Name"]
            source = _Source(ep.name, package, dist.version)
            builtin = package == BUILTIN_PACKAGE
            catalog.installed += [n for n in (ep.name, package) if n not in catalog.installed]
            matched |= {ep.name, package} & blocked
            if builtin_only and not builtin:
                continue
            if ep.name in blocked or package in blocked:
                catalog.disabled.append(f"{ep.name} ({package})")
                continue
            try:
                module = ep.load()
                register(module, ep.name, source)
            except Exception as exc:  # a broken third-party plugin must say which one it is
                why = str(exc) if isinstance(exc, PluginError) else (
                    f"importing {ep.value} failed: {type(exc).__name__}: {exc}")
                if builtin:
                    raise PluginError(f"tunebench's own plugin '{ep.name}' failed: {why}") from exc
                catalog.broken.append(BrokenPlugin(ep.name, package, dist.version, why))
    env_modules = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for item in [*env_modules, *extra]:
        if isinstance(item, str):
            try:
                plugin: object = importlib.import_module(item)
            except Exception as exc:  # ImportError, SyntaxError, or whatever the module raised
                raise PluginError(f"plugin module '{item}' could not be imported: {_describe(exc)}. "
                                  f"Check the module (--plugin / {PLUGINS_ENV}) and that it is on the "
                                  f"Python path") from None
            name = item
        else:
            plugin, name = item, getattr(item, "__name__", None) or type(item).__name__
        if pm.is_registered(plugin):
            continue
        register(plugin, name, _Source(name, "local", "-"))
        if isinstance(item, str):
            catalog.modules += (item,)
        else:
            catalog.inline = True

    for plugin_name, plugin in pm.list_name_plugin():
        source = sources.get(id(plugin), _Source(plugin_name, "local", "-"))
        try:
            _collect(pm, plugin, catalog, source)
        except DuplicateNameError:
            raise
        except Exception as exc:
            for kind in REGISTER_HOOKS.values():
                getattr(catalog, kind)._drop(source.plugin)
            why = str(exc) if isinstance(exc, PluginError) else f"its register hook raised {_describe(exc)}"
            if source.package in ("local", BUILTIN_PACKAGE):
                if isinstance(exc, PluginError):
                    raise
                raise PluginError(f"plugin '{source.plugin}' ({source.package}): {why}") from None
            pm.unregister(plugin)
            catalog.broken.append(BrokenPlugin(source.plugin, source.package, source.version, why))
    for kind in REGISTER_HOOKS.values():
        getattr(catalog, kind).broken = catalog.broken
        getattr(catalog, kind).disabled = catalog.disabled
    catalog.unmatched = sorted(blocked - matched) if entry_points else []
    return catalog


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations in `plugin` that no spec declares, each with the closest real hook."""
    known = sorted(n for n in dir(hookspecs) if n.startswith("tunebench_"))
    found = []
    for attr in dir(plugin):
        try:
            opts = pm.parse_hookimpl_opts(plugin, attr)
        except Exception:  # an attribute that cannot be inspected is no hook
            continue
        if opts is not None and attr not in known:
            hint = difflib.get_close_matches(attr, known, n=1, cutoff=0.5)
            found.append(f"a hook that does not exist, '{attr}'"
                         + (f": did you mean '{hint[0]}'?" if hint else f" (tunebench hooks are: {', '.join(known)})"))
    return found


def _entry_points() -> Iterator[tuple[importlib.metadata.EntryPoint, importlib.metadata.Distribution]]:
    seen: set[tuple[str, str]] = set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            # The same distribution can be visible twice on sys.path (e.g. an editable install).
            if ep.group == ENTRY_POINT_GROUP and (dist.metadata["Name"], ep.name) not in seen:
                seen.add((dist.metadata["Name"], ep.name))
                yield ep, dist


def _collect(pm: pluggy.PluginManager, plugin: object, catalog: Catalog, source: _Source) -> None:
    """Call one plugin's register hooks, so that every class it adds knows its plugin and package."""
    for hook_name, kind in REGISTER_HOOKS.items():
        registry: Registry[Any] = getattr(catalog, kind)
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin is not plugin:
                continue
            registry._source = source
            try:
                kwargs = {"registry": registry}
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            finally:
                registry._source = _Source("<direct>", "-", "-")
