"""Anchor indexes built block by block, for anchor sets too large to hold as float32 vectors.

Ten million anchors of dimension 1280 take 51 GB as float32: more than this machine's memory,
so they can be neither kept nor handed to FAISS at once. A :class:`CompressedIndex` is trained
on a sample, then takes the anchors one block at a time and keeps only their compressed codes
(1 byte per dimension with ``SQ8``, ``m`` bytes with ``PQm``), never the vectors: the blocks can
come from a generator that reads or encodes them lazily.

An optional projection to ``dims`` dimensions comes first. It is *uncentred*: the top
eigenvectors of the second-moment matrix ``X^T X`` of the sample, the projection that keeps
inner products best. FAISS's ``PCA`` subtracts the mean, and ``<x - m, y - m>`` ranks the
anchors ``y`` of a query ``x`` by ``<x, y> - <m, y>``: a different top-k for inner-product
search.

Search follows the index protocol (:class:`asif.index.AnchorSearch`: ``n``, ``d``, ``search``,
``iter_search``), so ``RelativeSpace(index=...)`` runs on it unchanged; recall against exact search and
throughput at 10M anchors are measured in ``benchmarks/bench_10m.py``.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2000, 32)).astype(np.float32)
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> index = CompressedIndex.build([x[:1000], x[1000:]], "IVF16,SQ8;nprobe=16", dims=24)
    >>> index.n, index.d, index.dims
    (2000, 32, 24)
    >>> index.search(x[:3], k=1)[1].ravel().tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from asif import storage
from asif.index.exact import DEFAULT_QUERY_BATCH
from asif.index.factory import (
    GPU_MAX_K,
    check_gpu_params,
    concatenate_chunks,
    faiss_index,
    gpu_placement,
    index_to_gpus,
    set_search_params,
)

__all__ = ["CompressedIndex", "uncentred_projection"]

INDEX_FORMAT = "asif-compressed-index"
INDEX_FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
TRAIN_ROWS = 1 << 18
"""Rows ``build`` trains on by default (FAISS wants at least 39 per inverted list)."""


def uncentred_projection(sample: np.ndarray, dims: int) -> np.ndarray:
    """The (dims, d) projection onto the top eigenvectors of ``sample.T @ sample``.

    ``<P x, P y>`` is the best rank-``dims`` approximation of ``<x, y>`` over the sample.

    Example:
        >>> x = np.array([[3.0, 0.0, 0.1], [0.0, 2.0, 0.1]], np.float32)
        >>> uncentred_projection(x, 1).shape
        (1, 3)
        >>> [round(abs(float(v)), 2) for v in uncentred_projection(x, 1)[0]]
        [1.0, 0.0, 0.03]
    """
    sample = np.asarray(sample, dtype=np.float64)
    if not 1 <= dims <= sample.shape[1]:
        raise ValueError(f"dims must lie in [1, {sample.shape[1]}], got {dims}.")
    _, vectors = np.linalg.eigh(sample.T @ sample)
    return np.ascontiguousarray(vectors[:, ::-1][:, :dims].T, dtype=np.float32)


class CompressedIndex:
    """A FAISS index trained on a sample of anchors, filled one block at a time.

    Args:
        sample: (m, d) L2-normalised anchor vectors to train on (they are not added).
        factory: a ``faiss.index_factory`` string for the (projected) vectors, optionally
            followed by ``";"`` and search parameters, e.g. ``"IVF4096_HNSW32,SQ8;nprobe=64"``.
        dims: project to this many dimensions first (:func:`uncentred_projection`), or None.
        refine: a factory string for codes of the full, unprojected vectors (``"SQ8"``: 1 byte
            per dimension) that re-score the candidates found through ``factory``; how many
            candidates per result is the search parameter ``k_factor_rf`` (default 1).
        gpu: ``"auto"`` searches on all GPUs when FAISS has them, ``True`` requires them,
            ``False`` never. Training and adding run on the CPU; with ``refine``, so does
            search (FAISS has no GPU refine stage), as it does for indexes FAISS has no GPU
            version of (``HNSW32``, flat ``SQ8``): ``True`` refuses those, ``"auto"`` keeps
            them on the CPU and says so in ``placement``. An IVF with an HNSW coarse
            quantiser goes to the GPUs with a flat copy of its centroids
            (:func:`asif.index.factory.index_to_gpus`). The GPU copy is made by ``build`` and
            ``load`` (or the first search after ``add``); ``nprobe`` above 2,048 is refused when
            it is set.
        query_batch: queries searched per chunk.
        gpu_dtype: ``"float32"`` or ``"float16"`` (GPU storage of flat and IVF-flat codes, and
            float16 lookup tables for IVF-PQ).
        gpu_shard: several GPUs split the anchors (True) or each hold them all.

    Attributes:
        placement: where search runs (``"cpu"``, ``"gpu (FAISS, 2 GPUs, sharded)"``, ...).
        on_gpu: whether it runs on GPUs.
        max_k: the largest k ``search`` takes (2,048 on GPUs), or None.
    """

    def __init__(
        self,
        sample: np.ndarray,
        factory: str,
        *,
        dims: int | None = None,
        refine: str | None = None,
        gpu: bool | str = "auto",
        query_batch: int = DEFAULT_QUERY_BATCH,
        gpu_dtype: str = "float32",
        gpu_shard: bool = True,
    ) -> None:
        sample = _rows(sample, None, "training sample")
        if gpu is True and refine is not None:
            raise ValueError("gpu=True cannot be combined with refine: pass gpu='auto' or False.")
        if gpu_dtype not in ("float32", "float16"):
            raise ValueError(f"gpu_dtype must be 'float32' or 'float16', got {gpu_dtype!r}.")
        self.gpu_dtype, self.gpu_shard = gpu_dtype, bool(gpu_shard)
        self.factory_, self.d, self.dims, self.refine = factory, sample.shape[1], dims, refine
        self.query_batch = int(query_batch)
        spec = factory.partition(";")[0]
        index = inner = faiss_index(dims or self.d, spec)
        parts: list[object] = [inner]  # FAISS does not own the parts: keep them alive here
        if dims is not None:
            transform = faiss.LinearTransform(self.d, dims, False)
            faiss.copy_array_to_vector(uncentred_projection(sample, dims).ravel(), transform.A)
            transform.is_trained = True
            index = faiss.IndexPreTransform(transform, inner)
            parts += [transform, index]
        if refine is not None:
            codes = faiss_index(self.d, refine)
            index = faiss.IndexRefine(index, codes)
            parts += [codes, index]
        self._parts = parts
        self._place(index, gpu)
        index.train(sample)
        self._index = index
        self._search_index: faiss.Index | None = None
        self._apply_params()

    @classmethod
    def build(
        cls,
        blocks: Iterable[np.ndarray],
        factory: str,
        *,
        dims: int | None = None,
        refine: str | None = None,
        train_rows: int = TRAIN_ROWS,
        gpu: bool | str = "auto",
        show_progress_bar: bool = False,
        total: int | None = None,
    ) -> CompressedIndex:
        """Train on the first ``train_rows`` rows of ``blocks``, then add every block.

        The training rows are added too, in order, so position ``i`` is the ``i``-th row of the
        concatenated blocks. Memory: the sample, one block and the codes. ``total``: the
        number of blocks, for the progress bar.
        """
        blocks = iter(blocks)
        head: list[np.ndarray] = []
        rows = 0
        for block in blocks:
            head.append(_rows(block, None, "anchor block"))
            rows += head[-1].shape[0]
            if rows >= train_rows:
                break
        if not head:
            raise ValueError("no anchor blocks to build an index from.")
        index = cls(np.concatenate(head)[:train_rows], factory, dims=dims, refine=refine, gpu=gpu)
        bar = tqdm(
            total=total, desc="adding anchor blocks", unit="block", disable=not show_progress_bar
        )
        for block in itertools.chain(head, blocks):
            index.add(block)
            bar.update()
        bar.close()
        index._searcher()  # the GPU copy, now rather than at the first query
        return index

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, gpu: bool | str = "auto", verify: bool = True
    ) -> CompressedIndex:
        """Read an index written by :meth:`save` (no pickle).

        The folder is opened once and its FAISS file read through that descriptor after its
        checksum is checked (``verify=False`` skips that pass over the file; its size and the
        manifest's own checksum are still checked), so a corrupted file is refused, never
        searched, and a save over ``path`` meanwhile gives the old index or the new one. A file
        written by an older asif (``path`` and ``path.json`` beside it) still loads, unverified.

        Raises:
            FileNotFoundError: ``path`` is not a saved index.
            asif.storage.AnchorFileError: a file is missing, truncated, altered or malformed.
        """
        path = Path(path)
        if path.is_file() and _meta_path(path).is_file():
            return cls._load_legacy(path, gpu)
        return storage.load_folder(path, lambda folder: cls._read(folder, gpu, verify))

    @classmethod
    def _read(cls, folder: storage.Folder, gpu: bool | str, verify: bool) -> CompressedIndex:
        manifest = storage.read_manifest(folder, INDEX_FORMAT, INDEX_FORMAT_VERSION)
        where = folder.path / storage.MANIFEST
        files = manifest.get("files")
        if not isinstance(files, dict) or set(files) != {INDEX_FILE}:
            raise storage.AnchorFileError(f"{where}: 'files' must list exactly {INDEX_FILE!r}.")
        with folder.file(INDEX_FILE, files[INDEX_FILE]) as f:
            if verify:
                f.verify()
            index = _read_faiss(f)
        return cls._from_faiss(index, manifest, str(f.path), gpu)

    @classmethod
    def _load_legacy(cls, path: Path, gpu: bool | str) -> CompressedIndex:
        logging.getLogger("asif").warning(
            "%s is an index file without a checksum (written by an older asif): save it again "
            "to get a verified folder.",
            path,
        )
        meta = storage.parse_json(_meta_path(path).read_bytes(), str(_meta_path(path)))
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as error:
            raise storage.AnchorFileError(f"{path} is not a FAISS index: {error}") from None
        return cls._from_faiss(index, meta, str(path), gpu)

    @classmethod
    def _from_faiss(
        cls, index: faiss.Index, meta: object, where: str, gpu: bool | str
    ) -> CompressedIndex:
        """The object around a read FAISS index, checked against its metadata."""
        if not isinstance(meta, dict):
            raise storage.AnchorFileError(f"{where}: its metadata is not a JSON object.")
        factory, dims, refine, n = (meta.get(key) for key in ("factory", "dims", "refine", "n"))
        if (
            not isinstance(factory, str)
            or not (dims is None or (type(dims) is int and dims >= 1))
            or not (refine is None or isinstance(refine, str))
            or (n is not None and n != index.ntotal)
            or ("d" in meta and meta["d"] != index.d)
        ):
            raise storage.AnchorFileError(
                f"{where}: its metadata (factory, dims, refine, n, d) is malformed or does not "
                f"match the index it holds (n={index.ntotal}, d={index.d})."
            )
        new = object.__new__(cls)
        new._index = index
        new.factory_, new.dims, new.refine = factory, dims, refine
        new.d = index.d
        new.query_batch = DEFAULT_QUERY_BATCH
        new.gpu_dtype, new.gpu_shard = "float32", True
        new._place(index, gpu)
        new._search_index = None
        try:
            new._apply_params()
        except (RuntimeError, ValueError) as error:
            raise storage.AnchorFileError(f"{where}: bad search parameters: {error}") from None
        new._searcher()
        return new

    def _place(self, index: faiss.Index, gpu: bool | str) -> None:
        """Decide where search runs (before the index is trained or filled)."""
        self.on_gpu, self.placement = gpu_placement(
            index, gpu, shard=self.gpu_shard, what=f"index {self.factory_!r}"
        )
        self.max_k = GPU_MAX_K if self.on_gpu else None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to the folder ``path`` atomically; returns the path.

        The folder holds ``index.faiss`` (``faiss.write_index``) and a sealed ``manifest.json``
        with the factory, dims, refine, n, d and the FAISS file's size and checksum. It is
        written beside ``path`` and put in place in one step, so a failed or killed save leaves
        a previous index at ``path`` intact, and only an asif folder there is replaced.

        Example:
            >>> import tempfile
            >>> x = np.eye(4, dtype=np.float32)
            >>> folder = CompressedIndex.build([x], "Flat", gpu=False).save(tempfile.mkdtemp() + "/ix")
            >>> CompressedIndex.load(folder, gpu=False).n
            4
        """
        with storage.atomic_folder(path) as tmp:
            record = _write_faiss(self._index, tmp / INDEX_FILE)
            storage.write_json(
                tmp / storage.MANIFEST,
                {
                    "format": INDEX_FORMAT,
                    "format_version": INDEX_FORMAT_VERSION,
                    "factory": self.factory_,
                    "dims": self.dims,
                    "refine": self.refine,
                    "n": self.n,
                    "d": self.d,
                    "files": {INDEX_FILE: record},
                },
            )
        return Path(path)

    def __repr__(self) -> str:
        return (
            f"CompressedIndex(n={self.n}, d={self.d}, dims={self.dims}, {self.factory_!r}, "
            f"refine={self.refine!r}, {self.placement})"
        )

    @property
    def code_bytes(self) -> int:
        """Bytes held by the anchors' codes and ids (the index's memory, less small tables)."""
        total, index = 0, self._index
        if isinstance(index, faiss.IndexRefine):
            total += index.ntotal * faiss.downcast_index(index.refine_index).code_size
            index = faiss.downcast_index(index.base_index)
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            return total + ivf.ntotal * (ivf.code_size + 8)
        if isinstance(index, faiss.IndexPreTransform):
            index = faiss.downcast_index(index.index)
        return total + index.ntotal * getattr(index, "code_size", 4 * index.d)

    @property
    def n(self) -> int:
        """Anchors added so far."""
        return int(self._index.ntotal)

    def reserve(self, n: int) -> None:
        """Allocate the re-scoring codes of ``n`` anchors at once (zero-filled, so resident).

        Without it they grow by doubling, and each doubling briefly holds the old and the new
        copy: at 10M anchors that is gigabytes more than the final index.
        """
        if not isinstance(self._index, faiss.IndexRefine):
            return
        refine = faiss.downcast_index(self._index.refine_index)
        if hasattr(refine, "codes"):
            size = refine.codes.size()
            refine.codes.resize(max(size, int(n) * refine.code_size))
            refine.codes.resize(size)

    def add(self, block: np.ndarray) -> None:
        """Append a block of L2-normalised anchors (positions ``n..n+m-1``), in place."""
        self._index.add(_rows(block, self.d, "anchor block"))
        self._search_index = None

    def iter_search(self, queries: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(cosines, indices)`` for consecutive chunks of ``queries``; ``k = min(k, N)``.

        The cosines are those of the compressed (and projected) anchors: approximations.
        """
        if self.n == 0:
            raise ValueError("the index holds no anchors yet: add blocks first.")
        queries = _rows(queries, self.d, "queries", normalised=False)
        index = self._searcher()
        k = min(int(k), self.n)
        if self.max_k is not None and k > self.max_k:
            raise ValueError(
                f"this index searches at most k = {self.max_k} ({self.placement}), got k = {k}: "
                "lower k, or build it with gpu=False."
            )
        for start in range(0, queries.shape[0], self.query_batch):
            yield index.search(queries[start : start + self.query_batch], k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (approximate) cosines and anchor indices, each (n, min(k, N)), best first."""
        return concatenate_chunks(self.iter_search(queries, k), min(int(k), self.n))

    def set_search_params(self, params: str) -> None:
        """Replace the search parameters, e.g. ``"nprobe=256,k_factor_rf=4"``.

        Example:
            >>> x = np.eye(4, dtype=np.float32)
            >>> index = CompressedIndex.build([x], "IVF2,Flat", gpu=False)
            >>> index.set_search_params("nprobe=2")
            >>> index.factory_
            'IVF2,Flat;nprobe=2'
        """
        self.factory_ = self.factory_.partition(";")[0] + (f";{params}" if params else "")
        self._apply_params()

    def _searcher(self) -> faiss.Index:
        if not self.on_gpu or self.n == 0:
            return self._index
        if self._search_index is None:
            self._search_index = index_to_gpus(
                self._index, shard=self.gpu_shard, float16=self.gpu_dtype == "float16"
            )
            self._apply_params()
        return self._search_index

    def _apply_params(self) -> None:
        """Set the factory string's search parameters on the index (and its GPU copy)."""
        spec, _, params = self.factory_.partition(";")
        if self.on_gpu:
            check_gpu_params(params)
        set_search_params(self._index, params, on_gpu=False, factory=spec)
        if self._search_index is not None:
            set_search_params(self._search_index, params, on_gpu=True, factory=spec)


def _meta_path(path: Path) -> Path:
    """The metadata file beside an index file of the old, unverified format."""
    return path.with_name(path.name + ".json")


def _write_faiss(index: faiss.Index, path: Path) -> dict[str, object]:
    """Write ``index`` to ``path``, checksumming as FAISS writes; returns the file record."""
    checksum = storage.Checksum()
    with open(path, "wb") as f:

        def write(data: bytes) -> int:
            checksum.update(data)
            f.write(data)
            return len(data)

        writer = faiss.PyCallbackIOWriter(write)
        faiss.write_index(index, writer)
        del writer  # flushes FAISS's buffer
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": path.stat().st_size, "checksum": checksum.value()}


def _read_faiss(f: storage.OpenFile) -> faiss.Index:
    """Read a FAISS index through an opened file's descriptor."""
    offset = 0

    def read(n: int) -> bytes:
        nonlocal offset
        data = os.pread(f.fd, min(n, f.size - offset), offset)
        offset += len(data)
        return data

    try:
        return faiss.read_index(faiss.PyCallbackIOReader(read))
    except RuntimeError as error:
        raise storage.AnchorFileError(f"{f.path} is not a readable FAISS index: {error}") from None


def _rows(x: np.ndarray, d: int | None, what: str, *, normalised: bool = True) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or (d is not None and x.shape[1] != d):
        want = f"(m, {d})" if d is not None else "(m, d), m >= 1"
        raise ValueError(f"{what} must have shape {want}, got {x.shape}.")
    if normalised and not np.isfinite(x).all():
        raise ValueError(f"{what} has NaN or infinite values.")
    return x
