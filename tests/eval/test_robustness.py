"""Effective robustness: the logit-axis fit and residuals against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from asif.eval.robustness import (
    LinearFit,
    effective_robustness,
    expit,
    fit_line,
    logit,
    logit_residuals,
    robustness_table,
)


def test_fit_and_residuals_by_hand() -> None:
    # logits x = 0, 1, 2 and y = 0, 0.5, 1.5: mean x 1, mean y 2/3, Sxy = 1.5, Sxx = 2
    clean, shifted = expit([0.0, 1.0, 2.0]), expit([0.0, 0.5, 1.5])
    fit = fit_line(clean, shifted)
    assert fit.slope == pytest.approx(0.75)
    assert fit.intercept == pytest.approx(2 / 3 - 0.75)
    np.testing.assert_allclose(
        logit_residuals(clean, shifted, fit), [1 / 12, -1 / 6, 1 / 12], atol=1e-9
    )
    # R^2 = 1 - SSres / SStot = 1 - (1/144 + 1/36 + 1/144) / (4/9 + 1/36 + 25/36)
    assert fit.r2 == pytest.approx(1 - (6 / 144) / (7 / 6))
    # ER in accuracy: shifted - sigmoid(line), e.g. the middle one: sigmoid(0.5) - sigmoid(2/3)
    er = effective_robustness(clean, shifted, fit)
    assert er[1] == pytest.approx(expit(0.5) - expit(0.75 * 1 + 2 / 3 - 0.75))
    assert fit.predict(clean[0]) == pytest.approx(expit(2 / 3 - 0.75))


def test_a_point_on_the_line_has_zero_er_and_a_reference_fit_ignores_others() -> None:
    clean = expit([-1.0, 0.0, 1.0, 0.5])
    shifted = expit([-2.0, -1.0, 0.0, 1.0])  # the first three on y = x - 1; the last far above
    fit = fit_line(clean, shifted, reference=[True, True, True, False])
    assert (fit.slope, fit.intercept, fit.n) == (pytest.approx(1.0), pytest.approx(-1.0), 3)
    er = effective_robustness(clean, shifted, fit)
    np.testing.assert_allclose(er[:3], 0, atol=1e-12)
    assert er[3] == pytest.approx(expit(1.0) - expit(-0.5))


def test_logit_clips_and_fit_refuses_degenerate_input() -> None:
    assert np.isfinite(logit([0.0, 1.0])).all()
    with pytest.raises(ValueError, match="two configurations"):
        fit_line([0.5], [0.4])
    with pytest.raises(ValueError, match="two configurations"):
        fit_line([0.5, 0.5], [0.4, 0.3])


def test_robustness_table_intervals_and_groups() -> None:
    rng = np.random.default_rng(0)
    clean = np.array([0.5, 0.6, 0.7, 0.8])
    shifted = np.array([0.3, 0.42, 0.5, 0.65])
    # replicates scattered around the point estimates
    clean_samples = np.clip(clean + rng.normal(0, 0.01, size=(400, 4)), 0.01, 0.99)
    shifted_samples = np.clip(shifted + rng.normal(0, 0.01, size=(400, 4)), 0.01, 0.99)
    table = robustness_table(
        ["a", "b", "c", "d"],
        clean,
        shifted,
        clean_samples=clean_samples,
        shifted_samples=shifted_samples,
        groups={"ab": ["a", "b"], "cd": ["c", "d"]},
    )
    fit = fit_line(clean, shifted)
    assert table["fit"]["slope"] == pytest.approx(fit.slope)
    low, high = table["fit"]["slope_ci"]
    assert low < fit.slope < high
    for row, er in zip(table["rows"], effective_robustness(clean, shifted, fit), strict=True):
        assert row["effective_robustness"] == pytest.approx(er)
        assert row["effective_robustness_ci"][0] <= er + 0.01
        assert row["effective_robustness_ci"][1] >= er - 0.01
    groups = {g["group"]: g for g in table["groups"]}
    assert groups["ab"]["effective_robustness"] == pytest.approx(
        np.mean([r["effective_robustness"] for r in table["rows"][:2]])
    )
    # least squares: residuals on the logit axis sum to zero over the fitted points
    assert sum(r["logit_residual"] for r in table["rows"]) == pytest.approx(0, abs=1e-9)


def test_plot_effective_robustness() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from asif.eval.robustness import plot_effective_robustness

    table = robustness_table(["a", "b", "c"], [0.5, 0.6, 0.7], [0.3, 0.45, 0.5])
    fig = plot_effective_robustness(table, labels=["x", "x", "y"])
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "logit"
    fitted = next(line for line in ax.get_lines() if line.get_label() == "fit")
    x, y = fitted.get_data()
    np.testing.assert_allclose(
        y, LinearFit(**{k: table["fit"][k] for k in ("slope", "intercept", "r2", "n")}).predict(x)
    )
