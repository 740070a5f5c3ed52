"""``SpaceSnapshot``: what one query reads, frozen, and the one code path to relative vectors.

A :class:`~asif.RelativeSpace` swaps its anchors atomically; ``space.snapshot()`` returns the
anchors, both indexes, the centring means, the hub statistics, a version and the ``k, p,
hubness`` in force at that moment. Everything that turns embeddings into relative vectors goes
through :meth:`SpaceSnapshot.transform` (or its two halves, :meth:`~SpaceSnapshot.neighbours`
and :meth:`~SpaceSnapshot.relative_from_neighbours`): zero-shot classifiers, galleries,
explanations, the evaluation harness and the benchmarks all read a snapshot, so a query never
sees two anchor sets, and there is no second implementation of the model.

Example:
    >>> from asif import AnchorSet, RelativeSpace
    >>> space = RelativeSpace(k=2, p=1, hubness=0).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
    >>> snap = space.snapshot()
    >>> print(snap.transform(np.array([[1.0, 0.5, 0.0]]), "image").toarray().round(3))
    [[0.894 0.447 0.   ]]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp

from asif.anchors import AnchorSet
from asif.index import AnchorSearch
from asif.relative import check_p, normalize_rows, relative_from_topk, reweight_columns
from asif.transforms import anchor_k_occurrence, check_hubness, hub_weights, resolve_k

__all__ = ["MODALITIES", "Modality", "SpaceLike", "SpaceSnapshot"]

Modality = Literal["image", "text"]
MODALITIES: tuple[Modality, ...] = ("image", "text")


class SpaceLike(Protocol):
    """What zero-shot classifiers, galleries and explanations need of a space."""

    def snapshot(self) -> SpaceSnapshot: ...

    def encode_images(self, images: Any) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str] | np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SpaceSnapshot:
    """The anchors, indexes and parameters one query reads; immutable.

    Attributes:
        anchors: the anchor pairs (the axes).
        image_index: search over the image anchors (centred ones when ``means`` are set).
        text_index: search over the text anchors.
        version: changes whenever the anchors change (caches key on :attr:`key`).
        k: anchors kept per input (``"auto"`` or an int, resolved per modality by
            :meth:`k_for`).
        p: exponent on the kept cosines.
        hubness: alpha of the hub weights (0: off).
        means: per modality, the anchor mean subtracted before normalising (centring), or
            ``None`` when the space is not centred.
        hub_counts: per (modality, k), the anchors' k-occurrence (a cache shared by the
            snapshots of one anchor version; filled on first use unless the anchor set
            brought them).
    """

    anchors: AnchorSet
    image_index: AnchorSearch
    text_index: AnchorSearch
    version: int
    k: int | str
    p: float
    hubness: float
    means: dict[str, np.ndarray] | None = None
    hub_counts: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_p(self.p)
        check_hubness(self.hubness)
        resolve_k(self.k, 1)

    @property
    def key(self) -> tuple[Any, ...]:
        """What cached relative vectors depend on: the anchor version and ``(k, p, hubness)``."""
        return (self.version, self.k, self.p, self.hubness)

    @property
    def n_anchors(self) -> int:
        """N, the number of anchor pairs (= the number of axes)."""
        return len(self.anchors)

    def index(self, modality: Modality) -> AnchorSearch:
        """The index over one modality's anchors."""
        _check_modality(modality)
        return self.image_index if modality == "image" else self.text_index

    def k_for(self, modality: Modality) -> int:
        """The k used for this modality: ``k`` resolved against N and capped at N."""
        return resolve_k(self.k, self.index(modality).n)

    def prepare(self, embeddings: np.ndarray, modality: Modality) -> np.ndarray:
        """Query embeddings as the index compares them: unit rows, centred where the space is.

        Raises:
            ValueError: the embeddings' width is not the anchors' (another encoder made them).
        """
        index = self.index(modality)
        embeddings = normalize_rows(embeddings, what=f"{modality} embeddings")
        if embeddings.shape[1] != index.d:
            raise ValueError(
                f"{modality} embeddings have dimension {embeddings.shape[1]} but the anchors' "
                f"{modality} embeddings have {index.d}: encode queries with the encoder that "
                "made the anchors."
            )
        if self.means is None:
            return embeddings
        return normalize_rows(embeddings - self.means[modality], what=f"centred {modality}")

    def neighbours(
        self, embeddings: np.ndarray, modality: Modality
    ) -> tuple[np.ndarray, np.ndarray]:
        """(cosines, anchor positions) of each input's k nearest anchors, best first."""
        return self.index(modality).search(self.prepare(embeddings, modality), self.k_for(modality))

    def relative_from_neighbours(
        self, cosines: np.ndarray, positions: np.ndarray, modality: Modality
    ) -> sp.csr_array:
        """Sparse relative vectors (n, N) from the neighbours :meth:`neighbours` returns.

        ``normalise(w * max(cosines, 0) ** p)`` with the hub weights ``w`` (ones when
        ``hubness`` is 0).
        """
        vectors = relative_from_topk(positions, cosines, self.n_anchors, self.p)
        weights = self.hub_weights(modality)
        return vectors if weights is None else reweight_columns(vectors, weights)

    def transform(self, embeddings: np.ndarray, modality: Modality) -> sp.csr_array:
        """Sparse relative vectors (n, N) of embeddings, searched in chunks of queries."""
        queries = self.prepare(embeddings, modality)
        index, k = self.index(modality), self.k_for(modality)
        parts = [
            self.relative_from_neighbours(cosines, positions, modality)
            for cosines, positions in index.iter_search(queries, k)
        ]
        if not parts:
            return sp.csr_array((0, self.n_anchors), dtype=np.float32)
        return sp.csr_array(sp.vstack(parts, format="csr"))

    def hub_weights(self, modality: Modality) -> np.ndarray | None:
        """Per-anchor hub weights for this modality at its k (``None`` when hubness is 0)."""
        if self.hubness == 0:
            return None
        return hub_weights(self.hub_statistics(modality, self.k_for(modality)), self.hubness)

    def hub_statistics(self, modality: Modality, k: int) -> np.ndarray:
        """Each anchor's k-occurrence among (a sample of) the anchors' own top-k lists."""
        key = (modality, int(k))
        counts = self.hub_counts.get(key)
        if counts is None:
            with self._lock:
                counts = self.hub_counts.get(key)
                if counts is None:
                    index = self.index(modality)
                    counts = anchor_k_occurrence(index, k, rows=self._anchor_rows(modality))
                    self.hub_counts[key] = counts
        return counts

    def _anchor_rows(self, modality: Modality):  # type: ignore[no-untyped-def]
        """``rows(positions)``: anchor vectors as the index compares them."""
        index = self.index(modality)
        if hasattr(index, "rows"):  # the index keeps its vectors (centred ones when centred)
            return index.rows

        def rows(positions: np.ndarray) -> np.ndarray:
            embeddings = getattr(self.anchors, f"{modality}_embeddings")
            return self.prepare(np.asarray(embeddings[positions]), modality)

        return rows


def _check_modality(modality: Any) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}.")
