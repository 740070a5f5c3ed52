"""Exact top-k search with torch on GPUs: anchors resident on the devices, asif's tie rule.

FAISS's GPU indexes need a faiss-gpu build and select at most 2,048 results; this kernel needs
only a CUDA build of torch (what ``pip install torch`` gives on Linux) and selects any k. The
anchor rows are copied to the devices once, one block at a time, from where they lie
(memory-mapped shards included: no float32 copy of the set is made on the host); on several
GPUs each holds a contiguous part of them. A chunk of queries is scored against tiles of rows
(one matmul per tile) and each tile's best k are merged into the running best k, on the device.

Equal scores go to the lower position, as everywhere in asif (:func:`asif.topk.select_topk`):
each score and its position are packed into one int64 key (the float's bits in an order-keeping
form, then ``2**32 - 1 - position``), so a single ``torch.topk`` over keys picks the best scores
and, among equal ones, the lowest positions; no tie is left to the selection algorithm.

Stages that stay on the CPU: the relative vectors (clamp, power and normalise the ``(n, k)``
results: :mod:`asif.relative`) and the sparse products between relative vectors (scipy); both
cost ``O(n k)``, against ``O(n N d)`` for the search.

Where torch sees no GPU the same code runs on ``"cpu"`` devices (the tests run it so).

Example:
    >>> x = np.eye(4, dtype=np.float32)[[0, 1, 1, 2]]  # rows 1 and 2 are equal
    >>> scores, positions = TorchExact([x], ["cpu"]).search(x[[1]], 2)
    >>> positions.tolist(), scores.tolist()
    ([[1, 2]], [[1.0, 1.0]])
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "GPU_DTYPES",
    "TorchExact",
    "cuda_devices",
    "pack_keys",
    "resolve_devices",
    "unpack_keys",
]

GPU_DTYPES = ("float32", "float16", "bfloat16")
"""Storage (and matmul) dtypes of resident anchors; float16/bfloat16 round the cosines."""
_LOW = (1 << 32) - 1
_UPLOAD_ROWS = 1 << 16
_DRIVER_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def cuda_devices() -> list[str]:
    """torch's CUDA devices (``["cuda:0", ...]``), or ``[]``.

    torch (seconds to import) is imported only where a GPU driver is present or torch already
    is.

    Example:
        >>> isinstance(cuda_devices(), list)
        True
    """
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in _DRIVER_FILES):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def resolve_devices(gpu: bool | str) -> list[str]:
    """The torch devices exact search runs on for a ``gpu`` argument (``[]``: the CPU kernels).

    Raises:
        ValueError: ``gpu`` is not ``"auto"``, True or False.
        RuntimeError: ``gpu=True`` and torch sees no CUDA GPU.

    Example:
        >>> resolve_devices(False)
        []
    """
    if gpu not in ("auto", True, False):
        raise ValueError(f"gpu must be 'auto', True or False, got {gpu!r}.")
    if gpu is False:
        return []
    devices = cuda_devices()
    if gpu is True and not devices:
        raise RuntimeError(
            "gpu=True but torch sees no CUDA GPU: install a CUDA build of torch on a machine "
            "with a GPU, or pass gpu='auto' / gpu=False to search on the CPU."
        )
    return devices


def _torch() -> Any:
    import torch

    return torch


def pack_keys(scores: Any, first: int) -> Any:
    """int64 keys of a (q, m) float32 score tensor whose columns are positions ``first, ...``.

    Larger key = larger score, and among equal scores the lower position (-0.0 counts as 0.0).

    Example:
        >>> torch = _torch()
        >>> keys = pack_keys(torch.tensor([[0.5, -1.0, 0.5]]), 10)
        >>> [int(i) for i in keys.argsort(dim=1, descending=True)[0]]
        [0, 2, 1]
    """
    torch = _torch()
    bits = (scores.float() + 0.0).view(torch.int32).to(torch.int64)
    bits ^= (bits >> 31) & 0x7FFFFFFF
    bits <<= 32
    positions = torch.arange(first, first + scores.shape[1], device=scores.device)
    bits |= _LOW - positions
    return bits


def unpack_keys(keys: Any) -> tuple[np.ndarray, np.ndarray]:
    """(float32 scores, int64 positions) as NumPy arrays from keys made by :func:`pack_keys`.

    Example:
        >>> s, p = unpack_keys(pack_keys(_torch().tensor([[0.25, -0.5]]), 3))
        >>> s.tolist(), p.tolist()
        ([[0.25, -0.5]], [[3, 4]])
    """
    torch = _torch()
    high = keys >> 32
    high ^= (high >> 31) & 0x7FFFFFFF
    scores = high.to(torch.int32).view(torch.float32)
    positions = _LOW - (keys & _LOW)
    return scores.cpu().numpy(), positions.cpu().numpy()


class TorchExact:
    """Anchor rows resident on torch devices, searched exactly (scores, then asif's top-k rule).

    Args:
        blocks: (m_j, d) row blocks in position order (arrays, memory-mapped ones included);
            they are read once, a block of 65,536 rows at a time.
        devices: torch devices; the rows are split over them in contiguous parts.
        dtype: storage and matmul dtype (:data:`GPU_DTYPES`); ``"float32"`` keeps full-precision
            cosines (torch's default matmul, no TF32).
        work_bytes: device memory per tile of scores and keys (24 bytes per score).

    Raises:
        MemoryError: the rows do not fit in a CUDA device's free memory.
    """

    def __init__(
        self,
        blocks: Sequence[np.ndarray],
        devices: Sequence[str],
        *,
        dtype: str = "float32",
        work_bytes: int = 1 << 31,
    ) -> None:
        torch = _torch()
        if dtype not in GPU_DTYPES:
            raise ValueError(f"dtype must be one of {GPU_DTYPES}, got {dtype!r}.")
        if not devices:
            raise ValueError("TorchExact needs at least one device.")
        blocks = [b for b in blocks if b.shape[0]]
        self.n = sum(b.shape[0] for b in blocks)
        self.d = int(blocks[0].shape[1])
        self.dtype = dtype
        self.work_bytes = int(work_bytes)
        torch_dtype = getattr(torch, dtype)
        bounds = [self.n * i // len(devices) for i in range(len(devices) + 1)]
        check_fits(devices, bounds, self.d, torch_dtype.itemsize, self.work_bytes)
        self._parts: list[tuple[Any, Any, int]] = []  # (device, rows tensor, first position)
        for device, start, stop in zip(devices, bounds[:-1], bounds[1:], strict=True):
            if stop > start:
                rows = torch.empty((stop - start, self.d), dtype=torch_dtype, device=device)
                _upload(rows, blocks, start, stop)
                self._parts.append((torch.device(device), rows, start))
        self.devices = tuple(str(device) for device, _, _ in self._parts)

    @property
    def placement(self) -> str:
        """Where the rows are: e.g. ``"gpu (torch cuda:0, cuda:1, float32)"``."""
        kind = "gpu" if any(d.startswith("cuda") for d in self.devices) else "cpu"
        return f"{kind} (torch {', '.join(self.devices)}, {self.dtype})"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``min(k, n)`` best (cosines, positions) per query, best first; ties: lower position."""
        torch = _torch()
        k = min(int(k), self.n)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with torch.inference_mode():
            host = torch.from_numpy(queries)
            keys = [self._part_keys(host, rows, first, k) for _, rows, first in self._parts]
            home = self._parts[0][0]
            best = keys[0] if len(keys) == 1 else torch.cat([key.to(home) for key in keys], 1)
            best = torch.topk(best, k, dim=1, sorted=True).values
            return unpack_keys(best)

    def _part_keys(self, host: Any, rows: Any, first: int, k: int) -> Any:
        """Keys of each query's best ``min(k, len(rows))`` rows of one device's part."""
        torch = _torch()
        q = host.shape[0]
        chunk = max(1, min(q, 2048))
        tile = max(k, self.work_bytes // (24 * chunk))
        out = []
        for a in range(0, q, chunk):
            queries = host[a : a + chunk].to(rows.device, rows.dtype, non_blocking=True)
            best = None
            for b in range(0, rows.shape[0], tile):
                scores = queries @ rows[b : b + tile].T
                keys = pack_keys(scores, first + b)
                del scores
                top = torch.topk(keys, min(k, keys.shape[1]), dim=1, sorted=False).values
                if best is not None:
                    top = torch.cat([best, top], 1)
                    top = torch.topk(top, min(k, top.shape[1]), dim=1, sorted=False).values
                best = top
            out.append(best)
        return torch.cat(out) if len(out) > 1 else out[0]


def check_fits(
    devices: Sequence[str], bounds: Sequence[int], d: int, itemsize: int, work_bytes: int
) -> None:
    """Refuse a CUDA device whose free memory cannot hold its rows plus one tile of work.

    Raises:
        MemoryError: naming the device, what it needs and the fixes.
    """
    needed = fits_reason(devices, bounds, d, itemsize, work_bytes)
    if needed is not None:
        raise MemoryError(
            f"{needed}: store them as float16 (gpu_dtype='float16'), spread them over more "
            "GPUs or shards, or search on the CPU (gpu=False)."
        )


def fits_reason(
    devices: Sequence[str], bounds: Sequence[int], d: int, itemsize: int, work_bytes: int
) -> str | None:
    """Why the rows ``bounds[i]:bounds[i+1]`` do not fit on ``devices[i]`` (None: they fit)."""
    for device, start, stop in zip(devices, bounds[:-1], bounds[1:], strict=True):
        if not str(device).startswith("cuda"):
            continue
        torch = _torch()
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        need = (stop - start) * d * itemsize + work_bytes
        if need > 0.9 * free:
            return (
                f"{stop - start} anchors of dimension {d} need {need / 2**30:.1f} GiB on {device} "
                f"but it has {free / 2**30:.1f} GiB free"
            )
    return None


def _upload(rows: Any, blocks: Sequence[np.ndarray], start: int, stop: int) -> None:
    """Copy rows ``start:stop`` of the concatenated blocks into the device tensor ``rows``."""
    torch = _torch()
    offset = 0
    for block in blocks:
        lo, hi = max(start, offset), min(stop, offset + block.shape[0])
        for a in range(lo, hi, _UPLOAD_ROWS):
            b = min(hi, a + _UPLOAD_ROWS)
            # a writable host copy of at most 65,536 rows (torch refuses read-only arrays)
            piece = np.array(block[a - offset : b - offset], dtype=np.float32, order="C")
            rows[a - start : b - start] = torch.from_numpy(piece).to(rows.device, rows.dtype)
        offset += block.shape[0]
