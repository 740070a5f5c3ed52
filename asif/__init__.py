"""asif: a multimodal (image + text) model from frozen unimodal encoders, without training.

Example:
    >>> import numpy as np
    >>> from asif import AnchorSet, RelativeSpace
    >>> rng = np.random.default_rng(0)
    >>> anchors = AnchorSet(rng.normal(size=(50, 16)), rng.normal(size=(50, 8)))
    >>> space = RelativeSpace(k=10, p=8).set_anchors(anchors)
    >>> space.similarity(rng.normal(size=(2, 16)), rng.normal(size=(3, 8))).shape
    (2, 3)
"""

from asif.anchors import AnchorSet
from asif.space import RelativeSpace
from asif.zeroshot import ZeroShotClassifier

__all__ = ["AnchorSet", "RelativeSpace", "ZeroShotClassifier"]
__version__ = "0.1.0"
