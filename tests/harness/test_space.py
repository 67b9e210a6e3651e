from __future__ import annotations

import math

import pytest

from tunebench.errors import SpaceError
from tunebench.space import (
    DefaultHyperParameters,
    FixedHyperParameters,
    KerasTunerHyperParameters,
    OptunaHyperParameters,
    RandomHyperParameters,
)


def declare(hp):
    """A define-by-run space with every kind of hyperparameter and a conditional one."""
    blocks = hp.Int("blocks", 1, 3)
    for i in range(blocks):
        hp.Choice(f"filters_{i}", [16, 32, 64])
    hp.Float("lr", 1e-4, 1e-1, log=True, default=1e-3)
    hp.Float("dropout", 0.0, 0.5, step=0.1)
    hp.Int("units", 8, 512, log=True)
    if hp.Boolean("batch_norm"):
        hp.Choice("momentum", [0.9, 0.99])
    return hp.values


def check_in_space(values):
    assert 1 <= values["blocks"] <= 3
    assert {f"filters_{i}" for i in range(values["blocks"])} <= set(values)
    assert f"filters_{values['blocks']}" not in values
    assert 1e-4 <= values["lr"] <= 1e-1
    assert 0.0 <= values["dropout"] <= 0.5 and abs(values["dropout"] * 10 - round(values["dropout"] * 10)) < 1e-9
    assert 8 <= values["units"] <= 512 and isinstance(values["units"], int)
    assert ("momentum" in values) == values["batch_norm"]


def test_random_sampler_is_seeded_and_stays_in_range():
    first = [declare(RandomHyperParameters((7, i))) for i in range(30)]
    again = [declare(RandomHyperParameters((7, i))) for i in range(30)]
    other = [declare(RandomHyperParameters((8, i))) for i in range(30)]
    assert first == again
    assert first != other
    for values in first:
        check_in_space(values)
    # conditional branches and every block count are actually explored
    assert {v["blocks"] for v in first} == {1, 2, 3}
    assert {v["batch_norm"] for v in first} == {False, True}


def test_random_log_scale_is_log_uniform():
    draws = [RandomHyperParameters((1, i)).Float("lr", 1e-4, 1e-0, log=True) for i in range(2000)]
    below = sum(d < 1e-2 for d in draws) / len(draws)
    assert 0.4 < below < 0.6  # half the decades lie below 1e-2


def test_defaults_and_fixed_values():
    values = declare(DefaultHyperParameters())
    assert values["blocks"] == 1 and values["lr"] == 1e-3 and values["batch_norm"] is False
    fixed = declare(FixedHyperParameters({"blocks": 2, "filters_1": 64, "batch_norm": True, "momentum": 0.99}))
    assert fixed["blocks"] == 2 and fixed["filters_1"] == 64 and fixed["momentum"] == 0.99
    assert fixed["filters_0"] == 16  # not given: default


def test_pins_override_any_strategy_and_unused_pins_are_reported():
    for i in range(5):
        hp = RandomHyperParameters((0, i)).pin({"blocks": 3, "units": 1000, "typo": 1})
        values = declare(hp)
        assert values["blocks"] == 3
        assert values["units"] == 1000  # pins may leave the search range (published configurations)
        assert hp.unused_pins() == ["typo"]


def test_pin_of_the_wrong_type_is_an_error():
    with pytest.raises(SpaceError, match="must be an integer"):
        declare(FixedHyperParameters({"blocks": 2.5}))
    with pytest.raises(SpaceError, match="true or false"):
        declare(FixedHyperParameters({"batch_norm": "yes"}))


def test_redeclaring_consistently_returns_the_same_value_and_inconsistently_fails():
    hp = RandomHyperParameters(0)
    a = hp.Int("units", 1, 100)
    assert hp.Int("units", 1, 100) == a
    with pytest.raises(SpaceError, match="declared twice differently"):
        hp.Int("units", 1, 200)


@pytest.mark.parametrize("declaration, message", [
    (lambda hp: hp.Int("a", 5, 1), "low <= high"),
    (lambda hp: hp.Float("a", 0.0, 1.0, log=True), "log scale needs low > 0"),
    (lambda hp: hp.Choice("a", []), "at least one value"),
    (lambda hp: hp.Int("a", 1, 10, default=11), "outside its range"),
    (lambda hp: hp.Float("a", 1e-3, 1.0, log=True, step=0.1), "step cannot be combined"),
])
def test_bad_declarations_are_clear_errors(declaration, message):
    with pytest.raises(SpaceError, match=message):
        declaration(DefaultHyperParameters())


def test_optuna_adapter_drives_a_real_study_define_by_run():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=5))
    seen = []
    for _ in range(15):
        trial = study.ask()
        hp = OptunaHyperParameters(trial)
        values = declare(hp)
        hp.Choice("shape", [(3, 3), (5, 5)])  # non-primitive choices go through an index
        check_in_space(values)
        assert {k: v for k, v in trial.params.items() if k != "shape"} == values
        assert hp.values["shape"] in [(3, 3), (5, 5)]
        study.tell(trial, -abs(math.log10(values["lr"]) + 2))
        seen.append(values["blocks"])
    assert len(study.trials) == 15 and len(set(seen)) > 1
    # the study learnt the conditional space it was driven through
    assert "lr" in study.best_params


def test_keras_tuner_adapter_declares_into_and_reads_from_keras_tuner():
    kt = pytest.importorskip("keras_tuner")
    kt_hp = kt.HyperParameters()
    values = declare(KerasTunerHyperParameters(kt_hp))
    check_in_space(values)
    assert {p.name for p in kt_hp.space} >= {"blocks", "filters_0", "lr", "dropout", "units", "batch_norm"}
    assert kt_hp.values["lr"] == values["lr"] == 1e-3  # KerasTuner answers new declarations with defaults
    # When KerasTuner's oracle proposes values, the adapter returns them.
    kt_hp.values.update({"blocks": 3, "filters_2": 64, "units": 100, "batch_norm": True, "momentum": 0.99})
    proposed = declare(KerasTunerHyperParameters(kt_hp))
    assert proposed["blocks"] == 3 and proposed["filters_2"] == 64 and proposed["units"] == 100
    assert proposed["momentum"] == 0.99
    lr = next(p for p in kt_hp.space if p.name == "lr")
    assert lr.sampling == "log"


def test_a_boolean_held_at_one_value_comes_back_from_keras_tuner_as_a_boolean():
    # KerasTuner turns a choice of booleans into ints; the value recorded for the trial (and pinned
    # again for the test evaluation) must still be a boolean.
    kt = pytest.importorskip("keras_tuner")
    kt_hp = kt.HyperParameters()
    hp = KerasTunerHyperParameters(kt_hp).restrict({"batch_norm": [False]})
    values = declare(hp)
    assert values["batch_norm"] is False and kt_hp.values["batch_norm"] == 0
    again = FixedHyperParameters(values)
    assert declare(again)["batch_norm"] is False


def test_a_restricted_space_offers_only_the_listed_values_and_pins_still_win():
    from tunebench.space import Param

    seen = set()
    for seed in range(20):
        hp = RandomHyperParameters((seed, 0)).restrict({"lr": [1e-3, 1e-2], "blocks": [2, 3]})
        values = declare(hp)
        seen.add((values["lr"], values["blocks"]))
        assert hp.params["lr"] == Param("lr", "choice", values=(1e-3, 1e-2), default=1e-3)
    assert seen == {(lr, b) for lr in (1e-3, 1e-2) for b in (2, 3)}
    pinned = DefaultHyperParameters().restrict({"lr": [1e-3, 1e-2]}).pin({"lr": 0.05})
    assert declare(pinned)["lr"] == 0.05  # a pin (a published value) wins over the restriction
    default = DefaultHyperParameters().restrict({"units": [100, 400]})
    assert declare(default)["units"] == 100  # the value nearest the declared default (8)
    typo = DefaultHyperParameters().restrict({"unitz": [8]})
    declare(typo)
    assert typo.unused_restrictions() == ["unitz"]
    with pytest.raises(SpaceError, match="blocks"):
        declare(DefaultHyperParameters().restrict({"blocks": [1.5]}))
