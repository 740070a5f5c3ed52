"""Settings: the paper's and asif's, their text form, and the one source of the defaults."""

from __future__ import annotations

import inspect

import pytest

from asif import RelativeSpace
from asif.settings import DEFAULT, PAPER, Setting, parse_setting


def test_parse_setting_round_trip_and_errors() -> None:
    s = parse_setting("x=auto,4,mean,center,hub=0.5")
    assert (s.name, s.k, s.p, s.combine, s.center, s.hubness) == (
        "x",
        "auto",
        4.0,
        "mean",
        True,
        0.5,
    )
    assert parse_setting("paper") == PAPER
    for bad in ("x=1,2", "x=1,2,median", "x=a,2,max", "x=1,2,max,fast"):
        with pytest.raises(ValueError, match="bad setting"):
            parse_setting(bad)


def test_setting_describe_and_k() -> None:
    assert PAPER.resolve_k(100) == 100
    assert Setting("a", k="auto").resolve_k(3_000) == 150
    assert Setting("a", k="auto").resolve_k(100_000) == 1600
    assert "centred" in Setting("c", center=True).describe()


def test_relative_space_defaults_are_the_default_setting() -> None:
    params = inspect.signature(RelativeSpace).parameters
    assert {name: params[name].default for name in ("k", "p", "hubness", "center")} == (
        DEFAULT.space_params()
    )
    combine = inspect.signature(RelativeSpace.zero_shot_classifier).parameters["combine"]
    assert combine.default == DEFAULT.combine
