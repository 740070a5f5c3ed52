"""``ShardedIndex``: the shards of an anchor set searched each on its own, merged exactly.

A saved anchor set is a sequence of shards (``shards/000000``, ... in :mod:`asif.anchors`). Each
shard is searched by its own index; a query's global top-k is taken from the union of the
shards' top-k lists, with every position moved by its shard's offset, by :func:`merge_topk`
(one :func:`asif.topk.select_topk`: equal scores to the lower global position). The union
always holds the global top-k: an anchor among the global best k has fewer than k better
anchors in its own shard. So the result is the exact top-k of the scores the shards computed,
and it equals the unsharded search whenever the shards score their rows as the unsharded
index does: :meth:`ShardedIndex.from_blocks` gives every shard the CPU kernel the unsharded
index would choose (:func:`asif.index.exact_kernel`), and :class:`~asif.index.AnchorIndex`
searches a set block by block anyway, so over the shards of a saved set the results agree to
the last bit. Cut at other places, scores can differ in the last bit (BLAS blocks the work by
shape and thread count), and then so can the order of anchors whose cosines tie within that.

In one process the shards are any :class:`~asif.index.AnchorSearch` objects; across processes
and machines, :class:`asif.index.RayShardedIndex` serves one shard per Ray actor with the same
merge. :func:`saved_shards` and :func:`load_shard` read one shard of a saved set without
reading the others (what an actor does).

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((300, 8)).astype(np.float32)
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> sharded = ShardedIndex.from_blocks([x[:100], x[100:250], x[250:]], gpu=False)
    >>> whole = AnchorIndex([x[:100], x[100:250], x[250:]], gpu=False)
    >>> sharded.n, sharded.offsets
    (300, (0, 100, 250))
    >>> all(np.array_equal(a, b) for a, b in zip(sharded.search(x[:5], 20), whole.search(x[:5], 20)))
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from asif import storage
from asif.index.exact import DEFAULT_QUERY_BATCH, AnchorIndex, block_shape, exact_kernel
from asif.index.factory import concatenate_chunks
from asif.topk import select_topk

__all__ = ["ShardedIndex", "load_shard", "merge_topk", "saved_shards"]

SET_FORMAT = ("asif-anchors", 2)
"""The anchor-set format read here: ``asif.anchors.FORMAT``, ``FORMAT_VERSION`` (asif.index does
not import asif.anchors, which imports the index; a test keeps the two equal)."""


def merge_topk(
    results: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The global top-k from each shard's ``(cosines, local positions)``, best first.

    Positions move by their shard's offset (``-1``, FAISS's "no result", stays ``-1``); one
    :func:`~asif.topk.select_topk` keeps the best k, equal scores by lower global position.

    Example:
        >>> a = (np.array([[0.75, 0.5]], np.float32), np.array([[1, 0]]))
        >>> b = (np.array([[0.75, 0.25]], np.float32), np.array([[0, 2]]))
        >>> [x.tolist() for x in merge_topk([a, b], [0, 10], 3)]
        [[[0.75, 0.75, 0.5]], [[1, 10, 0]]]
    """
    if len(results) != len(offsets):
        raise ValueError(f"got {len(results)} shard results for {len(offsets)} offsets.")
    values = np.hstack([np.asarray(c, dtype=np.float32) for c, _ in results])
    positions = np.hstack(
        [
            np.where(p >= 0, p.astype(np.int64) + offset, -1)
            for (_, p), offset in zip(results, offsets, strict=True)
        ]
    )
    return select_topk(values, positions, k)


class ShardedIndex:
    """Exact top-k over shards, each searched by its own index, merged by global position.

    Args:
        shards: one index per shard (:class:`~asif.index.AnchorSearch`, all of one ``d``);
            shard ``j`` holds positions ``offsets[j] .. offsets[j] + shards[j].n - 1``.
        query_batch: queries searched per chunk.

    Attributes:
        offsets: each shard's first global position.
        placement: each shard's ``placement`` where it has one (``"?"`` where not).
    """

    def __init__(self, shards: Sequence[Any], *, query_batch: int = DEFAULT_QUERY_BATCH) -> None:
        from asif.index import AnchorSearch

        shards = tuple(shards)
        if not shards:
            raise ValueError("a sharded index needs at least one shard.")
        for j, shard in enumerate(shards):
            if not isinstance(shard, AnchorSearch):
                raise TypeError(
                    f"shard {j} is a {type(shard).__name__}, not an index (n, d, search, "
                    "iter_search)."
                )
        dims = {int(s.d) for s in shards}
        if len(dims) != 1:
            raise ValueError(f"the shards have different dimensions {sorted(dims)}.")
        if query_batch < 1:
            raise ValueError(f"query_batch must be >= 1, got {query_batch}.")
        self.shards = shards
        self.query_batch = int(query_batch)
        sizes = [int(s.n) for s in shards]
        self.offsets = tuple(int(o) for o in np.cumsum([0, *sizes[:-1]]))
        self.n, self.d = sum(sizes), dims.pop()

    @classmethod
    def from_blocks(
        cls,
        blocks: Sequence[np.ndarray],
        *,
        factory: str = "Flat",
        gpu: bool | str = "auto",
        query_batch: int = DEFAULT_QUERY_BATCH,
        **options: Any,
    ) -> ShardedIndex:
        """One :class:`~asif.index.AnchorIndex` per block (searched in place), as one index.

        Every shard gets the exact-search kernel the unsharded index over all blocks would use
        (``kernel=exact_kernel(N)``), so results equal it to the last bit. ``options`` go to
        each ``AnchorIndex`` (``gpu_dtype``, ``gpu_shard``, ``kernel``).
        """
        n, _ = block_shape(blocks)
        options.setdefault("kernel", exact_kernel(n))
        shards = [AnchorIndex(b, factory=factory, gpu=gpu, **options) for b in blocks]
        return cls(shards, query_batch=query_batch)

    @classmethod
    def from_anchors(cls, anchors: Any, modality: str, **options: Any) -> ShardedIndex:
        """:meth:`from_blocks` over one modality's shards of an :class:`asif.AnchorSet`
        (memory-mapped ones of a loaded set, searched in place).

        Example:
            >>> from asif import AnchorSet
            >>> anchors = AnchorSet(np.eye(4), np.eye(4))
            >>> ShardedIndex.from_anchors(anchors, "image", gpu=False).n
            4
        """
        return cls.from_blocks(anchors.blocks(modality), **options)

    def __repr__(self) -> str:
        return f"ShardedIndex(n={self.n}, d={self.d}, shards={len(self.shards)})"

    @property
    def placement(self) -> tuple[str, ...]:
        """Where each shard searches (its ``placement``, ``"?"`` when it does not say)."""
        return tuple(str(getattr(s, "placement", "?")) for s in self.shards)

    @property
    def on_gpu(self) -> bool:
        """True when every shard searches on GPUs."""
        return all(bool(getattr(s, "on_gpu", False)) for s in self.shards)

    @property
    def max_k(self) -> int | None:
        """The largest k every shard takes (None: no limit)."""
        limits = [s.max_k for s in self.shards if getattr(s, "max_k", None) is not None]
        return min(limits) if limits else None

    # ----------------------------------------------------------------- search
    def iter_search(self, queries: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(cosines, positions)`` for consecutive chunks of ``queries``; ``k = min(k, N)``."""
        queries = _check_queries(queries, self.d)
        k = min(int(k), self.n)
        for start in range(0, queries.shape[0], self.query_batch):
            chunk = np.ascontiguousarray(queries[start : start + self.query_batch], np.float32)
            results = [shard.search(chunk, min(k, shard.n)) for shard in self.shards]
            yield merge_topk(results, self.offsets, k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosines and global positions, each (n, min(k, N)), best first."""
        return concatenate_chunks(self.iter_search(queries, k), min(int(k), self.n))

    # ----------------------------------------------------------------- rows
    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The anchor vectors at these global positions (shards that keep their vectors).

        Example:
            >>> index = ShardedIndex.from_blocks([np.eye(3, dtype=np.float32)[:2], np.eye(3, dtype=np.float32)[2:]])
            >>> index.rows(np.array([2, 0])).tolist()
            [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
        """
        return gather_rows(
            positions, self.offsets, self.n, self.d, lambda j, local: self.shards[j].rows(local)
        )

    def iter_vectors(self) -> Iterator[np.ndarray]:
        """Every anchor vector in position order, shard by shard (block by block)."""
        for shard in self.shards:
            yield from shard.iter_vectors()

    def vectors(self) -> np.ndarray:
        """All (N, d) anchor vectors in position order (a copy when there are several shards)."""
        blocks = list(self.iter_vectors())
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    # ----------------------------------------------------------------- updates
    def with_added(self, vectors: np.ndarray) -> ShardedIndex:
        """A new index with ``vectors`` appended to the last shard; ``self`` is unchanged."""
        last = self.shards[-1]
        if not hasattr(last, "with_added"):
            raise TypeError(f"the last shard ({type(last).__name__}) cannot add anchors.")
        return ShardedIndex(
            [*self.shards[:-1], last.with_added(vectors)], query_batch=self.query_batch
        )

    def without(self, positions: np.ndarray | Sequence[int]) -> ShardedIndex:
        """A new index without the anchors at these global positions; ``self`` is unchanged.

        Shards that lose every anchor are dropped; each touched shard must have ``without``.
        """
        positions = np.unique(np.asarray(positions, dtype=np.int64).reshape(-1))
        if positions.size and (positions[0] < 0 or positions[-1] >= self.n):
            raise IndexError(f"positions must lie in [0, {self.n}), got {positions[[0, -1]]}.")
        if positions.size == self.n:
            raise ValueError("cannot remove every anchor: a space needs at least one.")
        owner = np.searchsorted(self.offsets, positions, side="right") - 1
        shards = []
        for j, shard in enumerate(self.shards):
            local = positions[owner == j] - self.offsets[j]
            if local.size == 0:
                shards.append(shard)
            elif local.size < shard.n:
                if not hasattr(shard, "without"):
                    raise TypeError(f"shard {j} ({type(shard).__name__}) cannot remove anchors.")
                shards.append(shard.without(local))
        return ShardedIndex(shards, query_batch=self.query_batch)


def gather_rows(
    positions: np.ndarray,
    offsets: Sequence[int],
    n: int,
    d: int,
    read: Any,
) -> np.ndarray:
    """Rows at global ``positions`` from shards: ``read(shard, local_positions) -> rows``."""
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    if positions.size and (positions.min() < 0 or positions.max() >= n):
        raise IndexError(f"positions must lie in [0, {n}).")
    owner = np.searchsorted(offsets, positions, side="right") - 1
    out = np.empty((positions.size, d), np.float32)
    for j in np.unique(owner):
        hit = owner == j
        out[hit] = read(int(j), positions[hit] - offsets[j])
    return out


def _check_queries(queries: np.ndarray, d: int) -> np.ndarray:
    queries = np.asarray(queries)
    if queries.ndim != 2 or queries.shape[1] != d:
        raise ValueError(
            f"queries must have shape (n, {d}) to match the anchors, got {queries.shape}."
        )
    return queries


# --------------------------------------------------------------------------- one shard on disk
def _manifest(folder: storage.Folder) -> dict[str, Any]:
    manifest = storage.read_manifest(folder, *SET_FORMAT)
    if manifest["format_version"] < 2 or not isinstance(manifest.get("shards"), list):
        raise storage.AnchorFileError(
            f"{folder.path} is an anchor set of format {manifest['format_version']} (one "
            "folder, no shards): load it with AnchorSet.load, or save it again to shard it."
        )
    return manifest


def saved_shards(path: str | os.PathLike[str]) -> list[int]:
    """The number of anchors in each shard of the anchor set saved at ``path`` (its manifest).

    Example:
        >>> import tempfile
        >>> from asif import AnchorSet
        >>> folder = AnchorSet(np.eye(3), np.eye(3)).save(tempfile.mkdtemp() + "/a", shard_size=2)
        >>> saved_shards(folder)
        [2, 1]
    """
    manifest = storage.load_folder(path, _manifest)
    return [int(entry["n"]) for entry in manifest["shards"]]


def load_shard(
    path: str | os.PathLike[str], shard: int, modality: str, *, verify: bool = True
) -> np.ndarray:
    """One modality's rows of one shard of a saved set, memory-mapped (read-only, zero copy).

    Only that shard's embedding file is opened, through the set's folder and manifest as
    :meth:`AnchorSet.load` reads them; ``verify`` checks its checksum first.

    Raises:
        IndexError: there is no shard ``shard``.
        asif.storage.AnchorFileError: the file is missing, truncated or altered.

    Example:
        >>> import tempfile
        >>> from asif import AnchorSet
        >>> folder = AnchorSet(np.eye(3), np.eye(3)).save(tempfile.mkdtemp() + "/a", shard_size=2)
        >>> load_shard(folder, 1, "text").tolist()
        [[0.0, 0.0, 1.0]]
    """
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}.")

    def read(folder: storage.Folder) -> np.ndarray:
        manifest = _manifest(folder)
        entries = manifest["shards"]
        if not 0 <= shard < len(entries):
            raise IndexError(f"{folder.path} has shards 0..{len(entries) - 1}, not {shard}.")
        entry = entries[shard]
        name, where = f"{modality}_embeddings.npy", folder.path / "manifest.json"
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict) or name not in files:
            raise storage.AnchorFileError(f"{where}: shard {shard} lists no {name}.")
        shape = (int(entry["n"]), int(manifest[f"{modality}_dim"]))
        with (
            folder.folder("shards") as shards,
            shards.folder(entry["name"]) as sub,
            sub.file(name, files[name]) as f,
        ):
            array = f.npy(shape, manifest["dtype"], mmap=True)
            if verify:
                array.verify()
        return array.array

    return storage.load_folder(path, read)
