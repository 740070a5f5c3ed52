"""``RayShardedIndex``: one Ray actor per shard, queries fanned out, results merged exactly.

Each actor builds its shard's index in its own process (on its own machine in a cluster):
:meth:`RayShardedIndex.from_saved` has actor ``j`` memory-map shard ``j`` of a saved anchor
set from a path every node can read (:func:`asif.index.load_shard`: only that shard's file, its
checksum checked), so no anchor crosses the network. A search puts the queries in Ray's object
store once, asks every actor for its top-k, and merges the lists by global position with
:func:`asif.index.merge_topk`, the merge of the in-process :class:`~asif.index.ShardedIndex`.

Hot swap: a ``RayShardedIndex`` never changes; its actors, their shards and its offsets are fixed
when it is made, and making it returns once every actor has built its index and run a first
search (``warm``). A new version is a new index per modality, started while the old ones serve;
then one assignment moves the space to it::

    image = RayShardedIndex.from_saved("anchors-v2/", "image")   # v1 keeps serving meanwhile
    text = RayShardedIndex.from_saved("anchors-v2/", "text")
    space.index = {"image": image, "text": text}
    space.set_anchors(AnchorSet.load("anchors-v2/"))              # the switch
    old_image.close(); old_text.close()                           # once v1's queries are done

``set_anchors`` swaps the anchors and both indexes as one state, and a query reads one state
(:meth:`asif.RelativeSpace.snapshot`), so it searches the old actors or the new ones, never some
of each. Old actors live while their index object does (a query in flight holds its snapshot);
:meth:`RayShardedIndex.close` ends them once their running searches are done, or dropping the
last reference lets Ray end them.

Usage (Ray starts in seconds, so there is no runnable example here; ``tests/index`` runs it)::

    import ray
    from asif import AnchorSet, RelativeSpace
    from asif.index import RayShardedIndex

    ray.init()                       # a local Ray; ray.init(address="auto") joins a cluster
    anchors = AnchorSet.load("anchors/")          # ids and captions; rows stay where they are
    image = RayShardedIndex.from_saved("anchors/", "image", actor_options={"num_cpus": 4})
    text = RayShardedIndex.from_saved("anchors/", "text")
    space = RelativeSpace(k=800, p=8, hubness=0, index={"image": image, "text": text})
    space.set_anchors(anchors)
    print(image.placement)                        # each shard: node and cpu / gpu
"""

from __future__ import annotations

import functools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from asif.index.exact import DEFAULT_QUERY_BATCH, AnchorIndex, block_shape, exact_kernel
from asif.index.factory import concatenate_chunks
from asif.index.sharded import gather_rows, load_shard, merge_topk, saved_shards

__all__ = ["RayShardedIndex", "ShardServer"]

_WARM_K = 8


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "RayShardedIndex needs Ray: pip install 'asif[ray]' (or pip install 'ray[data]')."
        ) from error
    return ray


class ShardServer:
    """What one actor holds: one shard's index, built in the actor's process by ``build()``."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.index = build()

    def describe(self) -> dict[str, Any]:
        """n, d, max_k and where the shard searches (node and placement)."""
        node = ""
        try:
            node = _ray().get_runtime_context().get_node_id()[:8]
        except (ImportError, RuntimeError, AttributeError):
            node = os.uname().nodename
        return {
            "n": int(self.index.n),
            "d": int(self.index.d),
            "max_k": getattr(self.index, "max_k", None),
            "placement": f"node {node}: {getattr(self.index, 'placement', '?')}",
            "on_gpu": bool(getattr(self.index, "on_gpu", False)),
        }

    def warm(self) -> None:
        """One search: maps the shard's pages in and initialises the index's kernels."""
        query = np.full((1, self.index.d), self.index.d**-0.5, np.float32)
        self.index.search(query, min(_WARM_K, self.index.n))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The shard's top-k (cosines, local positions)."""
        return self.index.search(queries, k)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The shard's anchor vectors at these local positions."""
        return self.index.rows(positions)


@functools.cache
def _remote_server() -> Any:
    return _ray().remote(ShardServer)


def _from_saved(
    path: str, shard: int, modality: str, verify: bool, options: dict[str, Any]
) -> AnchorIndex:
    return AnchorIndex(load_shard(path, shard, modality, verify=verify), **options)


def _from_object(refs: list[Any], options: dict[str, Any]) -> AnchorIndex:
    return AnchorIndex(_ray().get(refs[0]), **options)


class RayShardedIndex:
    """Exact top-k over shards served by Ray actors (one per shard), merged by global position.

    Args:
        builders: one picklable callable per shard, run inside its actor, returning the shard's
            index (:class:`~asif.index.AnchorSearch`); shard ``j`` holds the positions after
            those of shards ``0..j-1``.
        actor_options: Ray actor options (``num_cpus``, ``num_gpus``, ``resources``,
            ``scheduling_strategy``, ...), for every actor or one mapping per shard.
        warm: wait for one search on every actor before returning.
        query_batch: queries sent to the actors per round (two rounds are in flight at once).

    Attributes:
        offsets: each shard's first global position.
        placement: per shard, its node and where its index searches.
        actors: the actor handles, in shard order.

    Raises:
        ImportError: Ray is not installed.
    """

    def __init__(
        self,
        builders: Sequence[Callable[[], Any]],
        *,
        actor_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        warm: bool = True,
        query_batch: int = DEFAULT_QUERY_BATCH,
    ) -> None:
        ray = _ray()
        builders = list(builders)
        if not builders:
            raise ValueError("a sharded index needs at least one shard.")
        if query_batch < 1:
            raise ValueError(f"query_batch must be >= 1, got {query_batch}.")
        options = _per_shard(actor_options, len(builders))
        server = _remote_server()
        self.actors = tuple(
            server.options(**opts).remote(build)
            for build, opts in zip(builders, options, strict=True)
        )
        try:
            shards = ray.get([a.describe.remote() for a in self.actors])
            dims = {s["d"] for s in shards}
            if len(dims) != 1:
                raise ValueError(f"the shards have different dimensions {sorted(dims)}.")
            if warm:
                ray.get([a.warm.remote() for a in self.actors])
        except BaseException:
            for actor in self.actors:
                ray.kill(actor)
            raise
        sizes = [s["n"] for s in shards]
        self.offsets = tuple(int(o) for o in np.cumsum([0, *sizes[:-1]]))
        self.n, self.d = sum(sizes), dims.pop()
        self.placement = tuple(s["placement"] for s in shards)
        self.on_gpu = all(s["on_gpu"] for s in shards)
        limits = [s["max_k"] for s in shards if s["max_k"] is not None]
        self.max_k = min(limits) if limits else None
        self.query_batch = int(query_batch)
        self._sizes = tuple(sizes)
        self._running = 0
        self._closed = False
        self._cond = threading.Condition()

    @classmethod
    def from_saved(
        cls,
        path: str | os.PathLike[str],
        modality: str,
        *,
        factory: str = "Flat",
        gpu: bool | str = "auto",
        verify: bool = True,
        actor_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        warm: bool = True,
        query_batch: int = DEFAULT_QUERY_BATCH,
        **index_options: Any,
    ) -> RayShardedIndex:
        """One actor per shard of the set saved at ``path``; actor ``j`` maps shard ``j``.

        ``path`` must be readable from every node (a shared or mounted file system). Each actor
        builds an :class:`~asif.index.AnchorIndex` (``factory``, ``gpu`` and ``index_options``)
        with the exact-search kernel of the unsharded set, so results equal a search over the
        whole set under the same BLAS threads. ``verify`` checks each shard's checksum in its
        actor.
        """
        path = os.fspath(os.path.abspath(path))
        sizes = saved_shards(path)
        options = {"factory": factory, "gpu": gpu, "kernel": exact_kernel(sum(sizes))}
        options.update(index_options)
        builders = [
            functools.partial(_from_saved, path, j, modality, verify, options)
            for j in range(len(sizes))
        ]
        return cls(builders, actor_options=actor_options, warm=warm, query_batch=query_batch)

    @classmethod
    def from_blocks(
        cls,
        blocks: Sequence[np.ndarray],
        *,
        factory: str = "Flat",
        gpu: bool | str = "auto",
        actor_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        warm: bool = True,
        query_batch: int = DEFAULT_QUERY_BATCH,
        **index_options: Any,
    ) -> RayShardedIndex:
        """One actor per row block; each block goes through Ray's object store once (read in
        place by an actor on the same node)."""
        ray = _ray()
        n, _ = block_shape(blocks)
        options = {"factory": factory, "gpu": gpu, "kernel": exact_kernel(n)}
        options.update(index_options)
        builders = [
            functools.partial(_from_object, [ray.put(np.ascontiguousarray(b))], options)
            for b in blocks
        ]
        return cls(builders, actor_options=actor_options, warm=warm, query_batch=query_batch)

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return f"RayShardedIndex(n={self.n}, d={self.d}, shards={len(self.actors)}{state})"

    # ----------------------------------------------------------------- search
    def iter_search(self, queries: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(cosines, positions)`` for consecutive chunks of ``queries``; ``k = min(k, N)``.

        Raises:
            RuntimeError: the index was closed.
        """
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.d:
            raise ValueError(
                f"queries must have shape (n, {self.d}) to match the anchors, got {queries.shape}."
            )
        k = min(int(k), self.n)
        self._enter()
        try:
            yield from self._rounds(queries, k)
        finally:
            self._leave()

    def _rounds(self, queries: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ray = _ray()
        pending: deque[list[Any]] = deque()
        for start in range(0, queries.shape[0], self.query_batch):
            chunk = np.ascontiguousarray(queries[start : start + self.query_batch], np.float32)
            ref = ray.put(chunk)
            pending.append(
                [
                    a.search.remote(ref, min(k, m))
                    for a, m in zip(self.actors, self._sizes, strict=True)
                ]
            )
            if len(pending) == 2:
                yield merge_topk(ray.get(pending.popleft()), self.offsets, k)
        while pending:
            yield merge_topk(ray.get(pending.popleft()), self.offsets, k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosines and global positions, each (n, min(k, N)), best first."""
        return concatenate_chunks(self.iter_search(queries, k), min(int(k), self.n))

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The anchor vectors at these global positions, read by the actors that hold them."""
        ray = _ray()
        self._enter()
        try:
            return gather_rows(
                positions,
                self.offsets,
                self.n,
                self.d,
                lambda j, local: ray.get(self.actors[j].rows.remote(local)),
            )
        finally:
            self._leave()

    # ----------------------------------------------------------------- lifetime
    def close(self, timeout: float | None = None) -> None:
        """End the actors once the searches running on them are done; later searches raise.

        Raises:
            TimeoutError: searches still run after ``timeout`` seconds (the actors live on).
        """
        ray = _ray()
        with self._cond:
            self._closed = True
            if not self._cond.wait_for(lambda: self._running == 0, timeout):
                raise TimeoutError(f"{self._running} searches still run on {self!r}.")
        for actor in self.actors:
            ray.kill(actor)

    def _enter(self) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(
                    f"{self!r} was closed: its actors are gone. Search the index that replaced "
                    "it (hot swap: RelativeSpace.set_anchors moves queries to the new one)."
                )
            self._running += 1

    def _leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()


def _per_shard(
    options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, n: int
) -> list[dict[str, Any]]:
    if options is None:
        return [{} for _ in range(n)]
    if isinstance(options, Mapping):
        return [dict(options) for _ in range(n)]
    options = [dict(o) for o in options]
    if len(options) != n:
        raise ValueError(f"got {len(options)} actor_options for {n} shards.")
    return options
