"""The evaluation harness: it sits on asif's public API, as open_clip's training code sits on
open_clip, and computes no score the library would compute differently.

- :mod:`asif.settings` (re-exported here): :class:`Setting`, :data:`PAPER`, :data:`DEFAULT`.
- :mod:`~asif.eval.workbench`: :class:`Workbench`, public ``RelativeSpace``s per setting over one
  anchor set, sharing their neighbour searches (:class:`CachedSearch`).
- :mod:`~asif.eval.baselines`: the label-transfer baseline.
- :mod:`~asif.eval.metrics`, :mod:`~asif.eval.reports`: metrics, tables, JSON, plots.
- :mod:`~asif.eval.sources`: named data sources in ``$ASIF_DATA`` (or a root you name).
- :mod:`~asif.eval.run`: :func:`evaluate`, all of it in one call (``asif eval``).
- :mod:`~asif.eval.suites`: the generalisation suites (``asif eval --suite NAME``):
  :func:`run_suite`, :func:`format_suite`, :func:`plot_suite`.

Example:
    >>> import numpy as np
    >>> from asif.eval import PAPER, Workbench
    >>> from asif import AnchorSet
    >>> rng = np.random.default_rng(0)
    >>> anchors = AnchorSet(rng.normal(size=(300, 8)), rng.normal(size=(300, 6)))
    >>> Workbench(anchors).retrieval_scores(rng.normal(size=(2, 8)), rng.normal(size=(4, 6)), PAPER).shape
    (2, 4)
"""

from __future__ import annotations

from asif.lazy import lazy_attributes
from asif.settings import DEFAULT, PAPER, Setting, parse_setting

__all__ = [
    "DEFAULT",
    "PAPER",
    "CachedSearch",
    "Setting",
    "Workbench",
    "balanced_subset",
    "classification_report",
    "evaluate",
    "format_results",
    "format_suite",
    "label_transfer_retrieval",
    "label_transfer_scores",
    "parse_setting",
    "plot_anchor_curve",
    "plot_suite",
    "retrieval_report",
    "run_suite",
    "write_json",
]

_LAZY = {
    "CachedSearch": "asif.eval.workbench",
    "Workbench": "asif.eval.workbench",
    "balanced_subset": "asif.eval.run",
    "evaluate": "asif.eval.run",
    "classification_report": "asif.eval.reports",
    "format_results": "asif.eval.reports",
    "plot_anchor_curve": "asif.eval.reports",
    "retrieval_report": "asif.eval.reports",
    "write_json": "asif.eval.reports",
    "label_transfer_retrieval": "asif.eval.baselines",
    "label_transfer_scores": "asif.eval.baselines",
    "run_suite": "asif.eval.suites",
    "format_suite": "asif.eval.suites",
    "plot_suite": "asif.eval.suites",
}


__getattr__, __dir__ = lazy_attributes("asif.eval", _LAZY, globals())
