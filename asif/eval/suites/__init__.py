"""The generalisation suites: what makes ASIF generalise, with the anchor set as the knob.

Each suite runs on cached embeddings after its first pass, returns a JSON-ready dict
(``suite``, ``config``, ``tables``, ``notes``), prints as tables and draws one figure:

- ``shift`` (:mod:`~asif.eval.suites.shift`): clean vs shifted accuracy (CIFAR-10-C style
  corruptions; texture-shape edges and silhouettes vs photos) and effective robustness;
- ``anchors`` (:mod:`~asif.eval.suites.anchors`): accuracy vs anchor-set size per source and
  diversity at equal size, clean and shifted;
- ``compositional`` (:mod:`~asif.eval.suites.compositional`): seen vs unseen colour-shape
  combinations on easy-VQA, against vision-only baselines;
- ``language`` (:mod:`~asif.eval.suites.language`): ASIF vs nearest-class-mean, k-NN and
  few-shot classifiers on the same anchor images with labels instead of captions.

``asif eval --suite NAME`` runs one from the command line (``--limit`` for CI-sized runs,
``--full`` for the benchmark's setting).

Example:
    >>> sorted(SUITES)
    ['anchors', 'compositional', 'language', 'shift']
    >>> sorted(full_setting("shift"))
    ['anchor_sets', 'n_clean', 'n_corrupted', 'pairs']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SUITES", "format_suite", "full_setting", "plot_suite", "run_suite"]

SUITES: dict[str, str] = {
    "shift": "asif.eval.suites.shift",
    "anchors": "asif.eval.suites.anchors",
    "compositional": "asif.eval.suites.compositional",
    "language": "asif.eval.suites.language",
}
"""Suite name -> module, which has ``run_<name>``, ``format_<name>``, ``plot_<name>`` and ``FULL``."""


def _module(name: str) -> Any:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}.")
    return importlib.import_module(SUITES[name])


def full_setting(name: str) -> dict[str, Any]:
    """The options of the benchmark's full run of suite ``name``."""
    return dict(_module(name).FULL)


def run_suite(name: str, *, full: bool = False, **options: Any) -> dict[str, Any]:
    """Run suite ``name`` with ``options`` (over :func:`full_setting` when ``full``)."""
    module = _module(name)
    chosen = {**(module.FULL if full else {}), **options}
    return getattr(module, f"run_{name}")(**chosen)


def format_suite(results: dict[str, Any]) -> str:
    """A suite's results as plain-text tables."""
    name = results["suite"]
    return getattr(_module(name), f"format_{name}")(results)


def plot_suite(results: dict[str, Any], **options: Any) -> Figure:
    """A suite's figure (matplotlib ``Figure``; ``pair=`` chooses the encoder pair where the
    figure shows one)."""
    name = results["suite"]
    return getattr(_module(name), f"plot_{name}")(results, **options)
