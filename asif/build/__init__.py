"""Building anchor sets from paired data: ``asif build`` in Python.

In ASIF the anchor set *is* the model. :func:`build_anchor_set` reads image-caption pairs from
caption files, WebDataset tars, Parquet files or a ``datasets.Dataset``, decodes images in
worker processes, encodes them with the frozen encoders and writes a sharded anchor set
(:mod:`asif.anchors`), resumably and exactly. The stages are separate modules, so another engine
can run them elsewhere:

- :mod:`asif.build.sources`: sources as parts of keyed samples, counted and read by range;
- :mod:`asif.build.plan`: the deterministic cut into work units, and the build folder;
- :mod:`asif.build.decode`: one unit read, checked, deduplicated and decoded into pixel batches;
- :mod:`asif.build.writer`: one encoded unit into its shard, and the shards into a set;
- :mod:`asif.build.local`: the ``local`` engine (``DataLoader`` workers + the encoders here).
- :mod:`asif.build.ray_engine`: the ``ray`` engine (Ray Data: decode tasks, encoder actors).

Example:
    >>> from asif.build import build_anchor_set
    >>> anchors = build_anchor_set(["shards/{000000..000099}.tar"], "anchors/")  # doctest: +SKIP
"""

from __future__ import annotations

from asif.build.core import DEFAULT_SHARD_SIZE, build_anchor_set, build_folder_of
from asif.build.plan import SettingsMismatch, WorkUnit, plan_units
from asif.build.sources import (
    CaptionFileSource,
    DatasetSource,
    ParquetSource,
    Sample,
    Source,
    WebDatasetSource,
    open_sources,
    write_webdataset,
)

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "CaptionFileSource",
    "DatasetSource",
    "ParquetSource",
    "Sample",
    "SettingsMismatch",
    "Source",
    "WebDatasetSource",
    "WorkUnit",
    "build_anchor_set",
    "build_folder_of",
    "open_sources",
    "plan_units",
    "write_webdataset",
]
