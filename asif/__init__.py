"""asif: a multimodal (image + text) model from frozen unimodal encoders, without training.

The public face is :class:`RelativeSpace` (the model), :class:`AnchorSet` (its anchor pairs) and
:class:`ZeroShotClassifier`. They load on first use, so ``import asif`` (or ``import asif.data``)
pulls in neither FAISS nor torch.

Example:
    >>> import numpy as np
    >>> from asif import AnchorSet, RelativeSpace
    >>> rng = np.random.default_rng(0)
    >>> anchors = AnchorSet(rng.normal(size=(50, 16)), rng.normal(size=(50, 8)))
    >>> space = RelativeSpace(k=10, p=8).set_anchors(anchors)
    >>> space.similarity(rng.normal(size=(2, 16)), rng.normal(size=(3, 8))).shape
    (2, 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asif.lazy import lazy_attributes

if TYPE_CHECKING:
    from asif.anchors import AnchorSet
    from asif.space import RelativeSpace
    from asif.zeroshot import ZeroShotClassifier

__all__ = ["AnchorSet", "RelativeSpace", "ZeroShotClassifier"]
__version__ = "0.1.0"

_LAZY = {
    "AnchorSet": "asif.anchors",
    "RelativeSpace": "asif.space",
    "ZeroShotClassifier": "asif.zeroshot",
}


__getattr__, __dir__ = lazy_attributes("asif", _LAZY, globals())
