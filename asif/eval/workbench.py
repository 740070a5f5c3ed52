"""A workbench for comparing settings on one anchor set: public spaces, shared neighbour searches.

Every score here comes from a :class:`~asif.RelativeSpace` built through its public constructor
(``RelativeSpace(**setting.space_params(), index=...)``) and asked through its public methods
(``zero_shot_classifier``, ``similarity``). The only thing the workbench adds is a cache: the
spaces search the anchors through :class:`CachedSearch`, which remembers the neighbours of a
query set at a given k, so a sweep over p, hub weights or prompt combinations searches the
anchors once per (modality, centring, k). The results are those of a fresh space (a test
checks this).

Example:
    >>> from asif import AnchorSet
    >>> from asif.settings import PAPER
    >>> rng = np.random.default_rng(0)
    >>> bench = Workbench(AnchorSet(rng.normal(size=(300, 8)), rng.normal(size=(300, 6))))
    >>> images, prompts = rng.normal(size=(20, 8)), rng.normal(size=(3, 2, 6))
    >>> bench.zero_shot_scores(images, prompts, PAPER).shape
    (20, 3)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from asif.anchors import AnchorSet
from asif.eval.baselines import check_prompts
from asif.index import AnchorIndex, AnchorSearch
from asif.settings import Setting
from asif.snapshot import MODALITIES
from asif.space import RelativeSpace

__all__ = ["CachedSearch", "Workbench"]


class CachedSearch:
    """An index that remembers its answers, keyed by (the queries' bytes, k).

    Implements :class:`asif.index.AnchorSearch` over an inner index; ``rows`` is passed through.
    With ``prefixes=True`` (for exact indexes only, whose lists are ordered by cosine, then
    position) a search at k is answered from a remembered search of the same queries at a
    larger k: its first k columns are what the inner index would return.

    Example:
        >>> index = CachedSearch(AnchorIndex(np.eye(3, dtype=np.float32), gpu=False))
        >>> q = np.eye(3, dtype=np.float32)[:1]
        >>> index.search(q, 2)[1] is index.search(q.copy(), 2)[1]
        True
    """

    def __init__(self, inner: AnchorSearch, *, prefixes: bool = False) -> None:
        self.inner = inner
        self.prefixes = prefixes
        self.n, self.d = inner.n, inner.d
        self._memo: dict[tuple[str, tuple[int, ...], int], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"CachedSearch({self.inner!r}, entries={len(self._memo)})"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The inner index's answer, from the memo when these queries were searched at k."""
        key = _key(queries, k)
        with self._lock:
            found = self._memo.get(key)
            if found is None and self.prefixes:
                found = self._prefix(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        result = self.inner.search(queries, k)
        self.remember(queries, k, result)
        return result

    def remember(self, queries: np.ndarray, k: int, result: tuple[np.ndarray, np.ndarray]) -> None:
        """Store ``result`` as the answer for ``queries`` at ``k`` (e.g. exact neighbours
        computed elsewhere, so a space answers with them)."""
        with self._lock:
            self._memo[_key(queries, k)] = result

    def _prefix(
        self, key: tuple[str, tuple[int, ...], int]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        digest, shape, k = key
        larger = [m for (d, s, m) in self._memo if d == digest and s == shape and m > k]
        if not larger:
            return None
        cosines, positions = self._memo[(digest, shape, min(larger))]
        if cosines.shape[1] < k:  # a search at a k above N returned all N: so would this one
            return cosines, positions
        return cosines[:, :k], positions[:, :k]

    def iter_search(self, queries: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One chunk: the whole (cached) answer."""
        yield self.search(queries, k)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The inner index's anchor rows."""
        return self.inner.rows(positions)  # type: ignore[attr-defined]


def _key(queries: np.ndarray, k: int) -> tuple[str, tuple[int, ...], int]:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    digest = hashlib.blake2b(memoryview(queries).cast("B"), digest_size=16).hexdigest()
    return digest, queries.shape, int(k)


class Workbench:
    """``RelativeSpace``s for many settings over one anchor set, sharing their searches.

    Args:
        anchors: the anchor pairs.
        gpu: passed to the exact indexes (``"auto"``, True, False).
    """

    def __init__(self, anchors: AnchorSet, *, gpu: bool | str = "auto") -> None:
        self.anchors = anchors
        self.gpu = gpu
        self.indexes: dict[tuple[str, bool], CachedSearch] = {}
        self._spaces: dict[Setting, RelativeSpace] = {}

    @property
    def n_anchors(self) -> int:
        """N, the number of anchor pairs."""
        return len(self.anchors)

    def space(self, setting: Setting) -> RelativeSpace:
        """The public space of ``setting`` over these anchors (built once per setting)."""
        key = setting
        if key not in self._spaces:
            index = {m: self._builder(m, setting.center) for m in MODALITIES}
            self._spaces[key] = RelativeSpace(
                **setting.space_params(),
                index=index,
                gpu=self.gpu,
                image_encoder=self.anchors.image_encoder or "default",
                text_encoder=self.anchors.text_encoder or "default",
            ).set_anchors(self.anchors)
        return self._spaces[key]

    def zero_shot_scores(
        self, images: np.ndarray, prompts: np.ndarray, setting: Setting
    ) -> np.ndarray:
        """(n_images, C) scores: ``space.zero_shot_classifier(...).decision_function(images)``.

        ``prompts`` is the (C, T, d) array of prompt embeddings.
        """
        n_classes, _ = check_prompts(prompts)
        classifier = self.space(setting).zero_shot_classifier(
            [str(c) for c in range(n_classes)], prompt_embeddings=prompts, combine=setting.combine
        )
        return classifier.decision_function(images)

    def retrieval_scores(
        self, images: np.ndarray, texts: np.ndarray, setting: Setting
    ) -> np.ndarray:
        """(n_images, n_texts) similarities: ``space.similarity(images, texts)``."""
        return self.space(setting).similarity(images, texts)

    def _builder(self, modality: str, center: bool) -> Callable[[Any], CachedSearch]:
        def build(vectors: Any) -> CachedSearch:
            key = (modality, bool(center))
            if key not in self.indexes:
                index = AnchorIndex(vectors, gpu=self.gpu)
                # prefixes hold for the CPU's exact lists (ordered by cosine, then position)
                self.indexes[key] = CachedSearch(index, prefixes=not index.on_gpu)
            return self.indexes[key]

        return build
