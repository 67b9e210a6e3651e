"""Suite files: the declarative description of a benchmark, validated before anything trains.

```yaml
name: smoke                 # optional, defaults to the file name
budget: 2m                  # wall-clock budget of each search (required)
trial_budget: 30s           # optional cap on each trial
max_epochs: 5               # optional cap on epochs per trial
seeds: [0, 1]               # or a count: `seeds: 3` means 0, 1, 2
datasets:
  - digits: {size: 16}
model_families:
  - mlp
  - scratch_cnn: {as: cnn_fixed, params: {blocks: 2}}   # `as` labels a variant
strategies:
  - random: {max_trials: 20}
  - optuna_tpe: {n_startup_trials: 5}
```

Each dataset x model family x strategy x seed is one search. Every problem found (unknown names,
bad options, bad budgets, impossible pairings, missing data) is reported together.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.budget import parse_duration
from tunebench.errors import OptionsError, SuiteError, UnknownPluginError
from tunebench.settings import SEARCH_KEYS, ExecutionSettings, Resources, SearchSettings

if TYPE_CHECKING:
    from tunebench.registry import Catalog, Registry

BACKENDS = ("tensorflow", "jax", "torch")
TOP_LEVEL = {"name", "description", "budget", "trial_budget", "max_epochs", "seeds", "datasets",
             "backend", "training", "resources", "model_families", "strategies", "tables", "protocol", *SEARCH_KEYS}
#: `budget: rule`: a search on a table gets ⌈20 + 40·√d⌉ full evaluations of its d-dimensional space.
BUDGET_RULE = "rule"
SEEDS_KEY = "seeds"  # per-strategy seeds
#: `min_trials` may not leave a trial less than this many seconds: what building and tracing take.
MIN_TRIAL_S = 1.0
LABEL_KEY = "as"
BUDGET_KEY = "budget"  # per-strategy budget
#: Options added after results were first stored: left out of a search's identity while at these
#: defaults, so that a store written by an earlier tunebench resumes instead of running everything again.
LATER_DEFAULTS: dict[str, Any] = {"parallel_trials": 1}
_UNSET = object()
PAIR_KEY = "model_families"  # a strategy paired only with these family labels


@dataclass(frozen=True)
class Entry:
    """One plugin use in a suite: registered name, resolved options, and a display label."""

    name: str
    options: Mapping[str, Any]
    label: str
    #: For a strategy: the only model family it pairs with (e.g. autokeras), or None.
    requires: str | None = None
    #: For a strategy: its own budget (seconds), overriding the suite's.
    budget_s: float | None = None
    #: For a strategy: the model-family labels it is paired with (None: all).
    only: tuple[str, ...] | None = None
    #: For a strategy: its own seeds, overriding the suite's.
    seeds: tuple[int, ...] | None = None

    def identity(self) -> dict[str, Any]:
        options = {k: v for k, v in self.options.items() if LATER_DEFAULTS.get(k, _UNSET) != v}
        return {"name": self.name, "options": options}


@dataclass(frozen=True)
class Search:
    """One (dataset, model family, strategy, seed) search of a suite."""

    suite: str
    dataset: Entry
    model_family: Entry
    strategy: Entry
    seed: int
    budget_s: float
    trial_budget_s: float | None
    max_epochs: int | None
    #: The Keras backend its process uses (None: $KERAS_BACKEND, else tensorflow).
    backend: str | None = None
    #: The suite's `training:` block (mixed precision, jit, steps per execution, data placement).
    training: ExecutionSettings = field(default_factory=ExecutionSettings)
    #: The suite's search settings (first trial, feasibility guard, hang timeout, min_trials).
    options: SearchSettings = field(default_factory=SearchSettings)
    #: A search on a table's task (the simulated clock): `dataset` is the task, `model_family` the table.
    simulated: bool = False
    #: Its budget came from `budget: rule` (⌈20 + 40·√d⌉ full evaluations), for the protocol check.
    budget_rule: bool = False

    @property
    def key(self) -> str:
        """A stable identity: the same search in a later invocation has the same key (resume)."""
        identity = {"suite": self.suite, "dataset": self.dataset.identity(),
                    "model_family": self.model_family.identity(), "strategy": self.strategy.identity(),
                    "seed": self.seed, "budget_s": self.budget_s, "trial_budget_s": self.trial_budget_s,
                    "max_epochs": self.max_epochs}
        if self.backend is not None:  # only when set, so that earlier results keep their keys
            identity["backend"] = self.backend
        if self.training.to_mapping():  # only what differs from the defaults, so old keys stay valid
            identity["training"] = self.training.to_mapping()
        if self.options.identity():
            identity["search_options"] = self.options.identity()
        if self.simulated:
            identity["simulated"] = True
        blob = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    @property
    def lanes(self) -> int:
        """How many processes run the search's trials at once (the strategy's `parallel_trials`)."""
        return int(self.strategy.options.get("parallel_trials") or 1)

    @property
    def title(self) -> str:
        backend = f" · {self.backend}" if self.backend else ""
        return f"{self.dataset.label} · {self.model_family.label} · {self.strategy.label}{backend} · seed {self.seed}"


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    #: Each search's budget in seconds; None with `budget: rule` (each table task's own).
    budget_s: float | None
    trial_budget_s: float | None
    max_epochs: int | None
    seeds: tuple[int, ...]
    datasets: tuple[Entry, ...]
    model_families: tuple[Entry, ...]
    strategies: tuple[Entry, ...]
    description: str = ""
    #: Families added because a strategy requires them and the suite did not list them.
    implied_families: tuple[Entry, ...] = ()
    #: Keras backends to run every search under (empty: the environment's).
    backends: tuple[str, ...] = ()
    training: ExecutionSettings = field(default_factory=ExecutionSettings)
    options: SearchSettings = field(default_factory=SearchSettings)
    #: What each search asks for: a cluster's CPUs and GPUs, and its memory guard.
    resources: Resources = field(default_factory=Resources)
    #: Tables the suite's strategies run against on the simulated clock (`tables:`), and each
    #: selected task of each with its search budget: (table entry, task label, task, budget_s).
    tables: tuple[Entry, ...] = ()
    table_tasks: tuple[tuple[Entry, str, str, float], ...] = ()
    #: The protocol the suite declares it follows (`protocols.PROTOCOLS`), checked when it is validated.
    protocol: str | None = None
    #: What validation noticed that is not an error (a pin outside what the family searches).
    warnings: tuple[str, ...] = ()

    def families_for(self, strategy: Entry) -> list[Entry]:
        """The model families a strategy is paired with."""
        if strategy.only is not None:
            return [m for m in self.model_families if m.label in strategy.only]
        if strategy.requires is None:
            return list(self.model_families)
        listed = [m for m in self.model_families if m.name == strategy.requires]
        return listed or [m for m in self.implied_families if m.name == strategy.requires]

    def select(self, *, datasets: list[str] | None = None, model_families: list[str] | None = None,
               strategies: list[str] | None = None) -> Suite:
        """The same suite restricted to some labels (a search keeps its identity, so results are shared)."""
        import dataclasses

        def keep(entries: tuple[Entry, ...], labels: list[str] | None) -> tuple[Entry, ...]:
            return entries if not labels else tuple(e for e in entries if e.label in labels)

        tasks = tuple(t for t in self.table_tasks if (not model_families or t[0].label in model_families)
                      and (not datasets or t[1] in datasets))
        return dataclasses.replace(self, datasets=keep(self.datasets, datasets),
                                   model_families=keep(self.model_families, model_families),
                                   implied_families=keep(self.implied_families, model_families),
                                   strategies=keep(self.strategies, strategies), table_tasks=tasks)

    def searches(self) -> list[Search]:
        """Every search of the suite: each dataset x model family x strategy x backend x seed, then
        each table task x strategy x seed (on the simulated clock)."""
        real = [Search(self.name, d, m, s, seed, s.budget_s or self.budget_s or 0.0, self.trial_budget_s,
                       self.max_epochs, backend, self.training, self.options)
                for d in self.datasets for s in self.strategies for m in self.families_for(s)
                for backend in (self.backends or (None,)) for seed in (s.seeds or self.seeds)]
        simulated = [Search(self.name, Entry(task, {}, label), table, s, seed, s.budget_s or budget_s,
                            self.trial_budget_s, self.max_epochs, None, self.training, self.options, simulated=True,
                            budget_rule=self.budget_s is None and s.budget_s is None)
                     for table, label, task, budget_s in self.table_tasks for s in self.strategies
                     if s.requires is None and (s.only is None or table.label in s.only)
                     for seed in (s.seeds or self.seeds)]
        return real + simulated


def load_suite(path: str | Path, catalog: Catalog, *, budget: str | None = None,
               check_resources: bool = True, datasets_only: list[str] | None = None,
               model_families_only: list[str] | None = None) -> Suite:
    """Read and validate a suite file.

    Args:
        budget: a duration overriding the suite's `budget` (the CLI's `--budget`).
        datasets_only, model_families_only: the labels about to run (the CLI's `--dataset` and
            `--model-family`): data and weights are checked for these only, so that a suite's
            stand-in rows run where the original's weights are missing. Everything else is still
            validated.

    Raises:
        SuiteError: listing every problem found.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise SuiteError(f"cannot run suite {path}:", [f"{what}: {path} (give a suite's YAML file)"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SuiteError(f"cannot read suite {path}:", [f"{exc.strerror or exc}"]) from None
    if b"\x00" in data:
        raise SuiteError(f"suite {path} is not a text file:", ["a suite is a YAML text file (UTF-8)"])
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is fine
    except UnicodeDecodeError as exc:
        raise SuiteError(f"suite {path} is not UTF-8:", [
            f"byte 0x{data[exc.start]:02x} at position {exc.start} is not UTF-8 (a Latin-1 or Windows "
            f"file?); save it as UTF-8"]) from None
    loader = _unique_key_loader()(text)
    try:
        raw = loader.get_single_data()
    except _DuplicateKeys as exc:
        raise SuiteError(f"suite {path} has keys written twice (the later one would silently win):",
                         exc.problems) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SuiteError(f"suite {path} is not valid YAML{where}:",
                         [str(getattr(exc, 'problem', exc))]) from None
    finally:
        loader.dispose()
    return parse_suite(raw, catalog, name=path.stem, path=str(path), budget=budget, check_resources=check_resources,
                       datasets_only=datasets_only, model_families_only=model_families_only)


class _DuplicateKeys(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _unique_key_loader() -> Any:
    """A safe YAML loader that refuses a mapping with a key written twice, naming every one."""
    import yaml

    class Loader(yaml.SafeLoader):
        duplicates: list[str]

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.duplicates.append(f"duplicate key {key!r} at line {line} (first at line {seen[key]})")
                else:
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

        def get_single_data(self) -> Any:
            self.duplicates = []
            data = super().get_single_data()
            if self.duplicates:
                raise _DuplicateKeys(self.duplicates)
            return data

    return Loader



def parse_suite(raw: Any, catalog: Catalog, *, name: str = "suite", path: str = "<suite>",
                budget: str | None = None, check_resources: bool = True, datasets_only: list[str] | None = None,
                model_families_only: list[str] | None = None) -> Suite:
    """Validate a suite given as data (the parsed YAML).

    Args:
        check_resources: also check that data and pretrained weights are available (off: names,
            options and pairings only).
        datasets_only, model_families_only: check resources for these labels only (`load_suite`).
    """
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise SuiteError(f"suite {path} is not valid:", ["the file must be a mapping with keys such as "
                                                         "budget, seeds, datasets, model_families, strategies"])
    for key in raw:
        if key not in TOP_LEVEL:
            hint = difflib.get_close_matches(str(key), sorted(TOP_LEVEL), n=1)
            problems.append(f"unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else
                                                      f"; known keys: {', '.join(sorted(TOP_LEVEL))}"))

    suite_name = raw.get("name", name)
    if not isinstance(suite_name, str) or not suite_name.strip():
        problems.append("'name' must be a non-empty string")
        suite_name = name

    by_rule = budget is None and raw.get("budget") == BUDGET_RULE
    budget_s = None if by_rule else _duration(budget if budget is not None else raw.get("budget"),
                                               "--budget" if budget is not None else "budget", problems,
                                               required=True)
    trial_budget_s = _duration(raw.get("trial_budget"), "trial_budget", problems, required=False)
    max_epochs = raw.get("max_epochs")
    if max_epochs is not None and (isinstance(max_epochs, bool) or not isinstance(max_epochs, int)
                                   or max_epochs < 1):
        problems.append(f"'max_epochs' must be a positive integer, not {max_epochs!r}")
        max_epochs = None
    seeds = _seeds(raw.get("seeds", [0]), problems)
    backends = _backends(raw.get("backend"), problems)
    training, training_problems = ExecutionSettings.parse(raw.get("training"))
    problems += training_problems
    search_options, option_problems = SearchSettings.parse(raw)
    problems += option_problems
    resources, resource_problems = Resources.parse(raw.get("resources"))
    problems += resource_problems

    tables = _entries(raw, "tables", catalog.tables, problems, required=False)
    real = not tables or raw.get("datasets") is not None or raw.get("model_families") is not None
    datasets = _entries(raw, "datasets", catalog.datasets, problems, required=real)
    families = _entries(raw, "model_families", catalog.model_families, problems, required=real)
    strategies = _entries(raw, "strategies", catalog.strategies, problems)
    if by_rule and real:
        problems.append("'budget: rule' (⌈20 + 40·√d⌉ full evaluations) is for tables only: give the datasets' "
                        "searches a duration, or run the tables in a suite of their own")
    table_tasks = _table_tasks(tables, budget_s, problems, check=check_resources)
    for entry, _ in strategies:
        if tables and entry.requires:
            problems.append(f"strategy '{entry.label}' searches its own model family ('{entry.requires}'), so it "
                            f"cannot run on a table; pair it with datasets only, or leave it out")
    implied: list[tuple[Entry, Any]] = []
    for entry, _ in strategies:
        if entry.requires and entry.requires not in {e.name for e, _ in families + implied}:
            if entry.requires not in catalog.model_families:
                problems.append(f"strategy '{entry.label}' needs the model family '{entry.requires}', "
                                f"which is not installed")
                continue
            instance = catalog.model_families.get(entry.requires)()
            implied.append((Entry(entry.requires, dict(instance.options), entry.requires), instance))

    # Data availability and pairings, for the entries that are valid so far.
    def wanted(label: str, only: list[str] | None) -> bool:
        return check_resources and (not only or label in only)

    specs = {}
    for entry, instance in datasets:
        found = instance.check() if wanted(entry.label, datasets_only) else []
        for problem in found:
            problems.append(f"dataset '{entry.label}': {problem}")
        if found:
            continue
        if check_resources and not wanted(entry.label, datasets_only):
            continue
        try:
            specs[entry.label] = instance.spec
        except Exception as exc:  # a spec can need files (a CSV's classes) that may be missing
            if check_resources:
                problems.append(f"dataset '{entry.label}': {exc}")
    pinned: list[tuple[str, Any, Any]] = []
    for entry, instance in families + implied:
        paired = True
        for dataset_label, spec in specs.items():
            for problem in instance.check(spec):
                paired = False
                problems.append(f"{problem} (pairing {entry.label} with dataset '{dataset_label}')")
        checked = wanted(entry.label, model_families_only)
        found = instance.check_resources() if checked else []
        for problem in found:
            problems.append(f"model family '{entry.label}': {problem}")
        if checked and paired and not found and specs and (instance.pins or instance.restrictions):
            pinned += [(entry.label, instance, spec) for spec in specs.values()]
    warnings: list[str] = []
    if pinned:  # one build of each pinned family per dataset, in a guarded child process
        from tunebench.declared import pin_problems

        problems.extend(pin_problems(pinned, plugins=catalog.modules, in_child=not catalog.inline,
                                     warnings=warnings))
    for entry, instance in strategies:
        problems.extend(f"strategy '{entry.label}': {p}" for p in instance.check(max_epochs))
    family_labels = {e.label for e, _ in families} | {e.label for e, _ in tables}
    for entry, _ in strategies:
        for label in entry.only or ():
            if label not in family_labels:
                problems.append(f"strategy '{entry.label}': {PAIR_KEY} names '{label}', which is not a model "
                                f"family label of this suite ({', '.join(sorted(family_labels))})")

    if search_options.min_trials is not None:
        budgets = [b for b in [budget_s, *(e.budget_s for e, _ in strategies)] if b is not None]
        if budgets and min(budgets) / search_options.min_trials < MIN_TRIAL_S:
            problems.append(f"'min_trials': {search_options.min_trials} trials in {min(budgets):g} s would give each "
                            f"{min(budgets) / search_options.min_trials:.2f} s, less than a trial needs to start "
                            f"({MIN_TRIAL_S:g} s to build and trace); ask for at most "
                            f"{max(2, int(min(budgets) // MIN_TRIAL_S))} or give a longer budget")
    protocol = raw.get("protocol")
    if protocol is not None:
        from tunebench.protocols import PROTOCOLS

        if protocol not in PROTOCOLS:
            problems.append(f"'protocol' must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if problems:
        raise SuiteError(f"suite {path} is not valid ({len(problems)} problem"
                         f"{'s' if len(problems) > 1 else ''}):", problems)
    if budget is not None:  # --budget wins over every budget in the file, per-strategy ones included
        strategies = [(replace(e, budget_s=None), i) for e, i in strategies]
    suite = Suite(name=suite_name, path=path, budget_s=budget_s, trial_budget_s=trial_budget_s,
                 max_epochs=max_epochs, seeds=tuple(seeds), datasets=tuple(e for e, _ in datasets),
                 model_families=tuple(e for e, _ in families), strategies=tuple(e for e, _ in strategies),
                 description=str(raw.get("description", "")), implied_families=tuple(e for e, _ in implied),
                 backends=backends, training=training, options=search_options, resources=resources,
                 tables=tuple(e for e, _ in tables), table_tasks=tuple(table_tasks), protocol=protocol,
                 warnings=tuple(warnings))
    if protocol is not None:
        from tunebench.protocols import PROTOCOLS, suite_lacks

        lacks = suite_lacks(suite, PROTOCOLS[protocol])
        if lacks:
            raise SuiteError(f"suite {path} declares `protocol: {protocol}` but does not follow it "
                             f"({PROTOCOLS[protocol].describe()}):", lacks)
    return suite


def _table_tasks(tables: list[tuple[Entry, Any]], budget_s: float | None, problems: list[str], *,
                 check: bool) -> list[tuple[Entry, str, str, float]]:
    """Each selected task of each table, labelled `<table label>/<task>`, with its search budget:
    the suite's, or by `budget: rule` ⌈20 + 40·√d⌉ times the table's typical full evaluation."""
    from tunebench.tables import budget_rule

    found: list[tuple[Entry, str, str, float]] = []
    for entry, table in tables:
        missing = table.check() if check else []
        problems.extend(f"table '{entry.label}': {p}" for p in missing)
        if missing:
            continue
        for task in table.selected_tasks():
            try:
                seconds = budget_s if budget_s is not None else (
                    budget_rule(table.dimension(task)) * table.full_evaluation_s(task))
            except Exception as exc:  # a table that cannot size its budget, or cannot read its data
                problems.append(f"table '{entry.label}', task '{task}': {exc}")
                continue
            found.append((entry, f"{entry.label}/{task}", task, float(seconds)))
    return found


def _backends(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        problems.append(f"'backend' must be one of {', '.join(BACKENDS)} or a list of them, not {value!r}")
        return ()
    for v in values:
        if v not in BACKENDS:
            problems.append(f"'backend': unknown Keras backend {v!r} (choose from {', '.join(BACKENDS)})")
    if len(set(values)) != len(values):
        problems.append("'backend' lists a backend twice")
    return tuple(v for v in values if v in BACKENDS)


def _duration(value: Any, key: str, problems: list[str], *, required: bool) -> float | None:
    if value is None:
        if required:
            problems.append(f"'{key}' is required: the wall-clock budget of each search, e.g. budget: 2m")
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        problems.append(f"'{key}': {exc}")
        return None


#: At most this many seeds per suite: each is a search per dataset x model family x strategy.
MAX_SEEDS = 1000
#: Seeds must be below this: Keras, NumPy's legacy seeding and scikit-learn take 32-bit seeds, and
#: the harness derives trial seeds and a second split seed from the search's seed.
SEED_LIMIT = 2**31


def _seeds(value: Any, problems: list[str]) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            problems.append("'seeds' as a count must be at least 1")
            return []
        if value > MAX_SEEDS:  # never build the list: validating costs what the suite is, not what it says
            problems.append(f"'seeds': {value} seeds would make {value:,} searches per dataset x model family x "
                            f"strategy; at most {MAX_SEEDS}")
            return []
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(value) > MAX_SEEDS:
            problems.append(f"'seeds' lists {len(value)} seeds; at most {MAX_SEEDS}")
            return []
        bad = [s for s in value if not 0 <= s < SEED_LIMIT]
        if bad:
            problems.append(f"'seeds': {', '.join(map(str, bad[:5]))} out of range; seeds must be at least 0 and "
                            f"below {SEED_LIMIT} (the libraries take 32-bit seeds)")
            return []
        if len(set(value)) != len(value):
            problems.append(f"'seeds' has duplicates: {value}")
        return list(dict.fromkeys(value))
    problems.append(f"'seeds' must be a count or a list of non-negative integers, not {value!r}")
    return []


def _entries(raw: Mapping[str, Any], section: str, registry: Registry[Any],
             problems: list[str], *, required: bool = True) -> list[tuple[Entry, Any]]:
    """Parse one plugin list; returns (entry, instance) for each valid one."""
    items = raw.get(section)
    if items is None:
        if required:
            problems.append(f"'{section}' is required: a list of {registry.kind} names"
                            + (" (or give `tables:` for searches on the simulated clock)"
                               if section in ("datasets", "model_families") else ""))
        return []
    if isinstance(items, (str, dict)):
        items = [items]
    if not isinstance(items, list) or not items:
        problems.append(f"'{section}' must be a non-empty list")
        return []
    found: list[tuple[Entry, Any]] = []
    labels: dict[str, int] = {}
    identities: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"{section}[{i}]"
        name, options = _split_item(item, where, problems)
        if name is None:
            continue
        options = dict(options)
        label = options.pop(LABEL_KEY, name)
        entry_budget, only, entry_seeds = None, None, None
        if section == "strategies":
            if SEEDS_KEY in options:
                seed_problems: list[str] = []
                entry_seeds = tuple(_seeds(options.pop(SEEDS_KEY), seed_problems)) or None
                problems.extend(f"{where} '{label}': {p}" for p in seed_problems)
                if seed_problems:
                    continue
            if BUDGET_KEY in options:
                try:
                    entry_budget = parse_duration(options.pop(BUDGET_KEY))
                except ValueError as exc:
                    problems.append(f"{where} '{label}': budget: {exc}")
                    continue
            if PAIR_KEY in options:
                only = options.pop(PAIR_KEY)
                if isinstance(only, str):
                    only = [only]
                if not isinstance(only, list) or not all(isinstance(x, str) for x in only):
                    problems.append(f"{where} '{label}': {PAIR_KEY} must be a list of model family labels")
                    continue
                only = tuple(only)
        if not isinstance(label, str) or not label:
            problems.append(f"{where} '{name}': '{LABEL_KEY}' must be a non-empty string")
            continue
        try:
            cls = registry.get(name)
        except UnknownPluginError as exc:
            problems.append(f"{where}: {exc}")
            continue
        try:
            instance = cls(**options)
        except OptionsError as exc:
            problems.extend(f"{where} '{label}': {p}" for p in exc.problems)
            continue
        entry = Entry(name=name, options=dict(instance.options), label=label,
                      requires=getattr(type(instance), "model_family", None), budget_s=entry_budget, only=only,
                      seeds=entry_seeds)
        # the same plugin and options under another budget, seeds or pairing is another search
        identity = json.dumps([entry.identity(), entry_budget, entry_seeds, only], sort_keys=True, default=str)
        if identity in identities:
            problems.append(f"{where} '{label}' repeats {section}[{identities[identity]}] with the same options")
            continue
        if label in labels:
            problems.append(f"{where}: label '{label}' is used twice in {section}; give each variant "
                            f"its own label with `{LABEL_KEY}: some_name`")
            continue
        labels[label], identities[identity] = i, i
        found.append((entry, instance))
    return found


def _split_item(item: Any, where: str, problems: list[str]) -> tuple[str | None, Mapping[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and len(item) == 1:
        (name, options), = item.items()
        if options is None:
            options = {}
        if not isinstance(options, dict):
            problems.append(f"{where} '{name}': options must be a mapping, not {options!r}")
            return None, {}
        return str(name), options
    problems.append(f"{where}: write a plugin as a name, or as `name: {{option: value}}`; got {item!r}")
    return None, {}
