"""`tunebench dashboard`: optuna-dashboard over any tunebench results store, live.

`StoreStorage` serves the store through Optuna's storage API (read-only): every run (one search,
of any strategy) is a study, named after its suite, dataset, model family, strategy and seed, and
every trial an Optuna trial with its hyperparameters, its validation score, the objective after
each epoch as intermediate values, and its status. Nothing is copied: each request reads the
store, so the dashboard follows a suite while it runs. optuna-dashboard is an optional extra
(`pip install 'tunebench[dashboard]'`).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Container, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tunebench.errors import require
from tunebench.vocabulary import TrialStatus

if TYPE_CHECKING:
    from tunebench.store import Store

#: How a tunebench trial's status shows in Optuna's terms.
STATES = {TrialStatus.OK: "COMPLETE", TrialStatus.TIMEOUT: "COMPLETE", TrialStatus.RUNNING: "RUNNING",
          TrialStatus.PRUNED: "PRUNED", TrialStatus.FAILED: "FAIL", TrialStatus.NAN: "FAIL",
          TrialStatus.INTERRUPTED: "FAIL"}


def storage(store: Store) -> Any:
    """An Optuna storage (read-only) showing `store`'s runs as studies and its trials as trials."""
    require("optuna", purpose="tunebench dashboard")
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.storages import BaseStorage
    from optuna.study import StudyDirection

    # private to Optuna 5.0 (pinned in constraints.txt; tests/test_package.py::
    # test_the_private_internals_we_use_exist): what a storage returns for `get_all_studies`
    from optuna.study._frozen import FrozenStudy
    from optuna.trial import FrozenTrial, TrialState

    def when(value: float | None) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(value)

    def distributions(trials: list[dict[str, Any]]) -> dict[str, Any]:
        """The distributions of a study's parameters, from the values its trials took (tunebench keeps
        the declarations in the model family, not the store)."""
        seen: dict[str, list[Any]] = {}
        for t in trials:
            for name, value in (t["params"] or {}).items():
                seen.setdefault(name, []).append(value)
        found: dict[str, Any] = {}
        for name, values in seen.items():
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if len(numbers) == len(values) and all(isinstance(v, int) for v in numbers):
                ilow, ihigh = int(min(numbers)), int(max(numbers))
                found[name] = IntDistribution(ilow, ihigh if ihigh > ilow else ilow + 1)
            elif len(numbers) == len(values):
                low, high = float(min(numbers)), float(max(numbers))
                found[name] = FloatDistribution(low, high if high > low else low + 1.0)
            else:
                choices = list(dict.fromkeys(v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
                                             for v in values))
                found[name] = CategoricalDistribution(choices)
        return found

    class StoreStorage(BaseStorage):
        """tunebench's store, as Optuna storage: studies are runs, trials are trials. Read-only."""

        def __init__(self) -> None:
            self.store = store

        # -- studies ---------------------------------------------------------------------------
        def _name(self, run: dict[str, Any]) -> str:
            backend = f" · {run['backend']}" if run.get("backend") else ""
            cell = (f"{run['dataset_label'] or run['dataset']} · {run['model_label'] or run['model_family']} · "
                    f"{run['strategy_label'] or run['strategy']}")
            return f"{run['suite']} · {cell}{backend} · seed {run['seed']} (run {run['id']})"

        def _study(self, run: dict[str, Any]) -> Any:
            attrs = {"status": run["status"], "suite": run["suite"], "budget_s": run["budget_s"],
                     "test_score": run["test_score"], "best_trial": run["best_trial"], "objective": run["objective"]}
            return FrozenStudy(study_name=self._name(run), direction=None, directions=[StudyDirection.MAXIMIZE],
                               user_attrs={k: v for k, v in attrs.items() if v is not None}, system_attrs={},
                               study_id=int(run["id"]))

        def get_all_studies(self) -> list[Any]:
            return [self._study(r) for r in self.store.runs()]

        def get_study_id_from_name(self, study_name: str) -> int:
            for run in self.store.runs():
                if self._name(run) == study_name:
                    return int(run["id"])
            raise KeyError(f"no study named {study_name!r}")

        def get_study_name_from_id(self, study_id: int) -> str:
            return self._name(self.store.run(study_id))

        def get_study_directions(self, study_id: int) -> list[Any]:
            return [StudyDirection.MAXIMIZE]

        def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
            return dict(self._study(self.store.run(study_id)).user_attrs)

        def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
            return {}

        # -- trials ----------------------------------------------------------------------------
        def _trials(self, run_id: int) -> list[Any]:
            rows = self.store.trials([run_id])
            if not rows:
                return []
            objective = self.store.run(run_id)["objective"] or "val_accuracy"
            curves: dict[int, dict[int, float]] = {}
            for e in self.store.epochs([t["id"] for t in rows]):
                value = (e["metrics"] or {}).get(objective)
                if value is not None and math.isfinite(value):
                    curves.setdefault(e["trial_id"], {})[int(e["epoch"])] = float(value)
            dists = distributions(rows)
            frozen = []
            for t in rows:
                state = TrialState[STATES.get(t["status"], "FAIL")]
                value = t["score"] if state == TrialState.COMPLETE and t["score"] is not None else None
                if state == TrialState.COMPLETE and value is None:
                    state = TrialState.FAIL  # a trial that completed no epoch has nothing to show
                params = {}
                for k, v in (t["params"] or {}).items():
                    if k in dists and v is not None:
                        categorical = isinstance(dists[k], CategoricalDistribution)
                        params[k] = str(v) if categorical and v not in dists[k].choices else v
                attrs = {"status": t["status"], "error": t["error"], "error_kind": t["error_kind"],
                         "param_count": t["param_count"], "epochs": t["epochs_done"], "lane": t["lane"]}
                frozen.append(FrozenTrial(
                    number=int(t["number"]), state=state, value=value, values=None,
                    datetime_start=when(t["started_at"]),
                    datetime_complete=when(t["finished_at"]) if state != TrialState.RUNNING else None,
                    params=params, distributions={k: dists[k] for k in params},
                    user_attrs={k: v for k, v in attrs.items() if v is not None}, system_attrs={},
                    intermediate_values=curves.get(t["id"], {}), trial_id=int(t["id"])))
            return frozen

        def get_all_trials(self, study_id: int, deepcopy: bool = True,
                           states: Container[Any] | None = None) -> list[Any]:
            trials = self._trials(study_id)
            return [t for t in trials if states is None or t.state in states]

        def get_trial(self, trial_id: int) -> Any:
            run_id = next(t["run_id"] for t in self.store.trials() if t["id"] == trial_id)
            return next(t for t in self._trials(run_id) if t._trial_id == trial_id)

        def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
            return int(next(t["id"] for t in self.store.trials([study_id]) if t["number"] == trial_number))

        # -- writes: the store is tunebench's record, written by its runs only ------------------------
        def _read_only(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("tunebench's dashboard is read-only: the store is written by its runs only")

        create_new_study = delete_study = set_study_user_attr = set_study_system_attr = _read_only
        create_new_trial = set_trial_param = set_trial_state_values = _read_only
        set_trial_intermediate_value = set_trial_user_attr = set_trial_system_attr = _read_only

    return StoreStorage()


def serve(store: Store, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run optuna-dashboard over `store` until interrupted (bound to `host`, loopback by default)."""
    dashboard = require("optuna_dashboard", extra="dashboard", purpose="tunebench dashboard")
    # The dashboard only reads, so SIGTERM may end it at once. The CLI's SIGTERM handler raises SystemExit,
    # which wsgiref swallows when it lands inside a request; the server would then run on.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    dashboard.run_server(storage(store), host=host, port=port)


def check_address(host: str, port: int) -> None:
    """Bind `host:port` once, before the server says it listens there: a port in use, an address
    that is not this machine's, or a host name that does not resolve is a user error."""
    import socket

    from tunebench.errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r} does not resolve ({exc.strerror}); give an address of this machine, "
                         f"e.g. 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            hint = (f"another program listens on port {port}; choose another with --port" if exc.errno == 98
                    else "give an address of this machine (--host) and a free port (--port)")
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}") from None


__all__: Sequence[str] = ("storage", "serve")
