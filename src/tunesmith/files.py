"""Writing files so that nothing is lost: atomic replacement with fsync, streaming hashes, and the
cache folder.

Shared by every stage. A reader never sees a half-written file, and after `write_atomic`
returns, the new contents survive a power cut (the file and its folder are fsynced).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """tunesmith's cache (converted models, evaluation answers, replay, measured hardware facts):
    $TUNESMITH_CACHE, else ~/.cache/tunesmith."""
    return Path(os.environ.get("TUNESMITH_CACHE", Path.home() / ".cache" / "tunesmith")).expanduser()


def fsync_dir(folder: Path) -> None:
    """Make a rename or new file in `folder` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str | bytes) -> Path:
    """Write `text` (or bytes) to `path` so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if os.environ.get("TUNESMITH_FAULT") == "enospc":  # the reliability suite's full disk
                raise OSError(28, "No space left on device", str(tmp))
            fh.write(text.encode("utf-8") if isinstance(text, str) else text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def replace_dir(new: Path, target: Path) -> Path:
    """Put the folder `new` in place of `target` without a moment when neither is complete: the old
    one is renamed aside first, the new one renamed in, then the old one deleted (a rename is
    atomic; deleting a model folder first, as a plain rmtree-then-rename does, leaves nothing
    usable if the process dies in between)."""
    import shutil

    aside = target.with_name(f".{target.name}.old")
    if aside.exists() and not target.exists():  # a previous swap died between its two renames
        os.replace(aside, target)
    shutil.rmtree(aside, ignore_errors=True)
    if target.exists():
        os.replace(target, aside)
    os.replace(new, target)
    fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return target


def write_json(path: Path, data: Any) -> Path:
    """`data` as indented JSON, written atomically."""
    return write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
