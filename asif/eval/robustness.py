"""Effective robustness: shifted against clean accuracy on logit axes, a line, and the residuals.

Taori et al. (2020, "Measuring robustness to natural distribution shifts") and Fang et al.
(2022, "Data determines distributional robustness in contrastive language image pre-training")
plot, for many models (here: configurations — encoder pair, anchor set, setting), accuracy under
shift against accuracy on clean data, both on logit axes, where the points lie close to a line.
A configuration's *effective robustness* is its distance above that line, in accuracy:

    fit:       logit(shifted_i) ~ slope * logit(clean_i) + intercept   (least squares)
    predicted: sigmoid(slope * logit(clean_i) + intercept)
    ER_i:      shifted_i - predicted_i

(``logit_residual`` is the same distance on the logit axis). The line can be fitted on a
reference group only (Taori et al. fit it on standard ImageNet models and measure CLIP against
it); it is then the others' distance from the reference line.

Example:
    >>> clean = expit(np.array([0.0, 1.0, 2.0]))
    >>> shifted = expit(np.array([0.0, 0.5, 1.5]))
    >>> fit = fit_line(clean, shifted)
    >>> round(fit.slope, 4), round(fit.intercept, 4)
    (0.75, -0.0833)
    >>> np.round(logit_residuals(clean, shifted, fit), 4).tolist()
    [0.0833, -0.1667, 0.0833]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "LinearFit",
    "effective_robustness",
    "expit",
    "fit_line",
    "logit",
    "logit_residuals",
    "plot_effective_robustness",
    "robustness_table",
]

EPS = 1e-3
"""Accuracies are clipped to [EPS, 1 - EPS] before the logit (0% and 100% have none)."""


def logit(p: Any, eps: float = EPS) -> np.ndarray:
    """log(p / (1 - p)), p clipped to [eps, 1 - eps].

    Example:
        >>> logit([0.5, 0.0]).round(3).tolist()
        [0.0, -6.907]
    """
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def expit(z: Any) -> np.ndarray:
    """The logistic function, the inverse of :func:`logit`.

    Example:
        >>> float(expit(0.0))
        0.5
    """
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


@dataclass(frozen=True)
class LinearFit:
    """The line logit(shifted) = slope * logit(clean) + intercept.

    Attributes:
        slope, intercept: the least-squares line.
        r2: the fraction of the variance of logit(shifted) it explains (on the fitted points).
        n: how many configurations it was fitted on.
    """

    slope: float
    intercept: float
    r2: float
    n: int

    def predict(self, clean: Any) -> np.ndarray:
        """The shifted accuracy the line expects at clean accuracy ``clean``."""
        return expit(self.slope * logit(clean) + self.intercept)


def fit_line(clean: Any, shifted: Any, reference: Any = None) -> LinearFit:
    """Least-squares line through (logit(clean), logit(shifted)) of the configurations
    (or of those where the boolean mask ``reference`` is true).

    Raises:
        ValueError: fewer than two points, or all at one clean accuracy.
    """
    x, y = logit(clean), logit(shifted)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"clean and shifted must be 1-D and alike, got {x.shape}, {y.shape}.")
    if reference is not None:
        mask = np.asarray(reference, dtype=bool)
        x, y = x[mask], y[mask]
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("a line needs at least two configurations at different clean accuracies.")
    with warnings.catch_warnings():  # a near-degenerate bootstrap replicate: the fit stands
        warnings.simplefilter("ignore")
        slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else 1.0
    return LinearFit(float(slope), float(intercept), r2, len(x))


def effective_robustness(clean: Any, shifted: Any, fit: LinearFit) -> np.ndarray:
    """Shifted accuracy minus what the line predicts from clean accuracy (accuracy units).

    Example:
        >>> fit = LinearFit(slope=1.0, intercept=0.0, r2=1.0, n=2)
        >>> effective_robustness([0.5], [0.6], fit).round(3).tolist()
        [0.1]
    """
    return np.asarray(shifted, dtype=np.float64) - fit.predict(clean)


def logit_residuals(clean: Any, shifted: Any, fit: LinearFit) -> np.ndarray:
    """logit(shifted) minus the line at logit(clean)."""
    return logit(shifted) - (fit.slope * logit(clean) + fit.intercept)


def robustness_table(
    names: Sequence[str],
    clean: Any,
    shifted: Any,
    *,
    reference: Any = None,
    clean_samples: np.ndarray | None = None,
    shifted_samples: np.ndarray | None = None,
    level: float = 0.95,
    groups: dict[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The fit and each configuration's effective robustness, with bootstrap intervals.

    Args:
        names: one name per configuration.
        clean, shifted: their accuracies.
        reference: a boolean mask of the configurations the line is fitted on (default: all).
        clean_samples, shifted_samples: (B, m) bootstrap replicates of the accuracies (test
            images resampled, the same draws for every configuration); the line is refitted
            on each replicate, which gives intervals for the slope and each configuration's ER.
        level: the interval's coverage.
        groups: named lists of configurations whose mean ER is reported (with an interval).

    Returns:
        ``{"fit": {slope, intercept, r2, n, slope_ci}, "rows": [{name, clean, shifted,
        predicted, effective_robustness, effective_robustness_ci, logit_residual}],
        "groups": [{group, n, effective_robustness, effective_robustness_ci}]}``.

    Example:
        >>> table = robustness_table(["a", "b", "c"], [0.5, 0.6, 0.7], [0.3, 0.45, 0.5])
        >>> table["fit"]["n"], [round(r["effective_robustness"], 3) for r in table["rows"]]
        (3, [-0.018, 0.039, -0.019])
    """
    clean = np.asarray(clean, dtype=np.float64)
    shifted = np.asarray(shifted, dtype=np.float64)
    fit = fit_line(clean, shifted, reference)
    er = effective_robustness(clean, shifted, fit)
    out: dict[str, Any] = {"fit": asdict(fit) | {"slope_ci": None}, "rows": [], "groups": []}
    er_ci: list[list[float] | None] = [None] * len(names)
    samples = None
    if clean_samples is not None and shifted_samples is not None:
        samples, slopes = _replicates(clean_samples, shifted_samples, reference)
        out["fit"]["slope_ci"] = _interval(slopes, level)
        er_ci = [_interval(samples[:, i], level) for i in range(len(names))]
    for i, name in enumerate(names):
        out["rows"].append(
            {
                "name": name,
                "clean": float(clean[i]),
                "shifted": float(shifted[i]),
                "predicted": float(fit.predict(clean[i])),
                "effective_robustness": float(er[i]),
                "effective_robustness_ci": er_ci[i],
                "logit_residual": float(logit_residuals(clean[i], shifted[i], fit)),
            }
        )
    for group, members in (groups or {}).items():
        index = [list(names).index(m) for m in members]
        row: dict[str, Any] = {
            "group": group,
            "n": len(index),
            "effective_robustness": float(er[index].mean()),
            "effective_robustness_ci": None,
        }
        if samples is not None:
            row["effective_robustness_ci"] = _interval(samples[:, index].mean(axis=1), level)
        out["groups"].append(row)
    return out


def _replicates(
    clean_samples: np.ndarray, shifted_samples: np.ndarray, reference: Any
) -> tuple[np.ndarray, np.ndarray]:
    """ER of every configuration and the slope, on each bootstrap replicate."""
    clean_samples = np.asarray(clean_samples, dtype=np.float64)
    shifted_samples = np.asarray(shifted_samples, dtype=np.float64)
    ers = np.empty_like(shifted_samples)
    slopes = np.empty(len(clean_samples))
    for b in range(len(clean_samples)):
        try:
            fit = fit_line(clean_samples[b], shifted_samples[b], reference)
        except ValueError:  # a degenerate replicate: every reference point at one accuracy
            ers[b], slopes[b] = np.nan, np.nan
            continue
        ers[b] = effective_robustness(clean_samples[b], shifted_samples[b], fit)
        slopes[b] = fit.slope
    return ers, slopes


def _interval(samples: np.ndarray, level: float) -> list[float] | None:
    samples = np.asarray(samples)[np.isfinite(samples)]
    if samples.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [float(low), float(high)]


def plot_effective_robustness(
    table: dict[str, Any],
    *,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str = "clean accuracy",
    ylabel: str = "accuracy under shift",
) -> Figure:
    """Shifted against clean accuracy on logit axes: the configurations, the fitted line, y = x.

    Args:
        table: from :func:`robustness_table`.
        labels: a legend group per row (same label, same colour); default: one group.
        ax: draw here instead of on a new figure.
        title, xlabel, ylabel: texts.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> table = robustness_table(["a", "b", "c"], [0.5, 0.6, 0.7], [0.3, 0.45, 0.5])
        >>> fig = plot_effective_robustness(table, labels=["x", "x", "y"])
        >>> fig.axes[0].get_xscale(), sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts())
        ('logit', ['fit', 'x', 'y', 'y = x'])
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('plots need matplotlib: pip install "asif[plot]"') from error
    rows = table["rows"]
    clean = np.array([r["clean"] for r in rows])
    shifted = np.array([r["shifted"] for r in rows])
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.6), layout="constrained")
    groups = list(labels) if labels is not None else [""] * len(rows)
    for group in dict.fromkeys(groups):
        mask = np.array([g == group for g in groups])
        ax.scatter(
            np.clip(clean[mask], EPS, 1 - EPS),
            np.clip(shifted[mask], EPS, 1 - EPS),
            s=28,
            label=group or None,
            zorder=3,
        )
    fit = LinearFit(**{k: table["fit"][k] for k in ("slope", "intercept", "r2", "n")})
    low = max(EPS, min(clean.min(), shifted.min()) * 0.8)
    high = min(1 - EPS, 1 - (1 - max(clean.max(), shifted.max())) * 0.8)
    grid = expit(np.linspace(logit(low), logit(high), 100))
    ax.plot(grid, fit.predict(grid), color="black", lw=1.2, label="fit")
    ax.plot(grid, grid, color="grey", ls="--", lw=1, label="y = x")
    from matplotlib.ticker import FuncFormatter, LogitFormatter

    for axis, scale in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale)):
        scale("logit")  # labels as decimals, not 1/2 or 1 - 10^-1
        axis.set_major_formatter(FuncFormatter(lambda p, _: f"{p:g}"))
        axis.set_minor_formatter(LogitFormatter(minor=True, one_half="0.5"))
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(
        title or f"effective robustness: slope {fit.slope:.2f}, R² {fit.r2:.2f}", fontsize=10
    )
    return ax.figure  # type: ignore[return-value]
