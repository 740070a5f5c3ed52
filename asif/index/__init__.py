"""Anchor indexes: top-k inner-product search over one modality's anchor vectors.

Every index follows one protocol, :class:`AnchorSearch`: ``n`` anchors of dimension ``d``,
``search(queries, k) -> (cosines, indices)`` best first, and ``iter_search`` for chunks of
queries. Indexes that keep the anchor vectors also give ``rows(positions)`` and
``iter_vectors()``; indexes that can be updated without a rebuild give ``with_added(vectors)``
and ``without(positions)``, returning a new index and leaving the old one searchable.

- :class:`AnchorIndex`: exact search over the anchors where they lie (or any FAISS factory
  string, on the CPU or GPUs).
- :class:`CompressedIndex`: a FAISS index trained on a sample and filled block by block, for
  anchor sets too large to hold as float32.
- :class:`ShardedIndex`: the shards of a set searched each by its own index and merged into the
  exact global top-k (:func:`merge_topk`); :class:`RayShardedIndex` serves one shard per Ray
  actor, across processes and machines (``pip install "asif[ray]"``).

Indexes say where they search (``placement``, ``on_gpu``) and the largest k they take
(``max_k``: 2,048 for FAISS's GPU indexes, checked by ``RelativeSpace.set_anchors``). Exact
search on GPUs runs through torch (:mod:`asif.index.gpu`), FAISS indexes on FAISS's GPUs
(:mod:`asif.index.factory`).

``RelativeSpace(index=...)`` takes a factory string, ``"auto"``, an index object, or a callable
that builds one from the anchor vectors, for both modalities or per modality
(:func:`build_index`).

Example:
    >>> x = np.eye(3, dtype=np.float32)
    >>> index = build_index("Flat", x)
    >>> isinstance(index, AnchorSearch), index.search(x[:1], 2)[1].tolist()
    (True, [[0, 1]])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import numpy as np

from asif.index.factory import GPU_MAX_K, auto_factory, gpu_available

if TYPE_CHECKING:
    from asif.index.actors import RayShardedIndex
    from asif.index.compressed import CompressedIndex
    from asif.index.exact import AnchorIndex, exact_kernel
    from asif.index.sharded import ShardedIndex, load_shard, merge_topk, saved_shards

__all__ = [
    "GPU_MAX_K",
    "AnchorIndex",
    "AnchorSearch",
    "CompressedIndex",
    "IndexSpec",
    "RayShardedIndex",
    "ShardedIndex",
    "auto_factory",
    "build_index",
    "check_index",
    "check_k",
    "exact_kernel",
    "gpu_available",
    "load_shard",
    "merge_topk",
    "saved_shards",
]

_LAZY = {
    "AnchorIndex": "asif.index.exact",
    "exact_kernel": "asif.index.exact",
    "CompressedIndex": "asif.index.compressed",
    "ShardedIndex": "asif.index.sharded",
    "load_shard": "asif.index.sharded",
    "merge_topk": "asif.index.sharded",
    "saved_shards": "asif.index.sharded",
    "RayShardedIndex": "asif.index.actors",
}


@runtime_checkable
class AnchorSearch(Protocol):
    """What the relative layer needs of an index over one modality's N anchors."""

    n: int
    """Number of anchors (positions ``0..n-1``)."""
    d: int
    """Dimension of the anchor vectors."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosines, positions) of each query's ``min(k, n)`` best anchors, best first."""
        ...

    def iter_search(self, queries: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The same, for consecutive chunks of the queries (memory stays bounded)."""
        ...


IndexSpec: TypeAlias = "str | AnchorSearch | Callable[[np.ndarray], AnchorSearch]"
"""What ``RelativeSpace(index=...)`` takes per modality: a factory string (``"Flat"``,
``"auto"``, any ``faiss.index_factory`` string with optional ``";"`` search parameters), an
index already built over that modality's anchors, or a callable ``vectors -> index``."""


def check_index(index: Any, n: int, d: int, what: str = "the index") -> AnchorSearch:
    """``index`` itself once it follows :class:`AnchorSearch` over ``n`` anchors of dimension ``d``.

    Raises:
        TypeError: it is not an index.
        ValueError: it was built over other anchors (its n or d differ).

    Example:
        >>> check_index(build_index("Flat", np.eye(2, dtype=np.float32)), 2, 2).n
        2
    """
    if not isinstance(index, AnchorSearch):
        raise TypeError(
            f"{what} is a {type(index).__name__}, not an index: it needs n, d, "
            "search(queries, k) and iter_search(queries, k)."
        )
    if (index.n, index.d) != (n, d):
        raise ValueError(
            f"{what} holds {index.n} anchors of dimension {index.d} but the anchor set has "
            f"{n} of dimension {d}: build the index over these anchors (or pass a factory "
            "string and let the space build it)."
        )
    return index


def check_k(index: Any, k: int, what: str = "the index") -> None:
    """Refuse a ``k`` above the index's ``max_k`` (FAISS's GPU indexes select at most 2,048).

    ``RelativeSpace.set_anchors`` calls it, so a k that the index cannot serve is an error when
    the anchors are set, not at the first query.

    Example:
        >>> class OnGpu:
        ...     max_k, placement = 2048, "gpu"
        >>> check_k(OnGpu(), 800)
        >>> check_k(OnGpu(), 4096)
        Traceback (most recent call last):
        ...
        ValueError: the index searches at most k = 2048 (gpu) but k = 4096: ...
    """
    limit = getattr(index, "max_k", None)
    if limit is not None and int(k) > limit:
        raise ValueError(
            f"{what} searches at most k = {limit} ({getattr(index, 'placement', '?')}) but "
            f"k = {int(k)}: lower k, build the index with gpu=False, or use exact search "
            "(index='Flat': on GPUs it runs through torch, with no limit on k)."
        )


def build_index(spec: Any, vectors: Any, *, gpu: bool | str = "auto") -> AnchorSearch:
    """The index that ``spec`` describes, over ``vectors`` (one modality's unit anchor rows).

    Args:
        spec: a factory string (:class:`AnchorIndex`), a callable ``vectors -> index``, or an
            index object (returned as is once its ``n`` and ``d`` match ``vectors``).
        vectors: (N, d) anchor vectors, or a list of row blocks searched as one array (what a
            callable receives too).
        gpu: for factory strings: ``"auto"``, ``True`` or ``False``.

    Raises:
        TypeError: ``spec`` is none of these, or a callable returned no index.
        ValueError: an index object was built over other anchors (its n or d differ).

    Example:
        >>> build_index(lambda v: build_index("Flat", v), np.eye(2, dtype=np.float32)).n
        2
    """
    from asif.index.exact import AnchorIndex, block_shape

    n, d = block_shape(vectors)
    if isinstance(spec, str):
        return AnchorIndex(vectors, factory=spec, gpu=gpu)
    if isinstance(spec, AnchorSearch):
        return check_index(spec, n, d)
    if callable(spec):
        return check_index(spec(vectors), n, d, "the index the builder returned")
    raise TypeError(
        "index must be a FAISS factory string ('Flat', 'auto', 'IVF1024,Flat;nprobe=64'), "
        f"an index object or a callable vectors -> index, got {type(spec).__name__}."
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asif.index' has no attribute {name!r}")
