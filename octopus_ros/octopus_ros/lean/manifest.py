"""The ONNX export's manifest (``manifest.json``): what the torch-free runtime loads, and the
checks that keep a stale or damaged export from running.

Written by ``python -m octopus_ros.model.onnx_export_all CKPT`` (torch) into ``CKPT/onnx`` (or
``--out``); read by :class:`octopus_ros.lean.runtime.LeanOctopus`. Entries:

- ``weights_sha256``: the checkpoint weights the graphs came from (config.json's ``weights.sha256``
  must equal it, else the export is stale);
- ``files``: every file of the export with its sha256 and size (a damaged file is refused by name);
- ``variants``: per precision ("fp32", "int8" with ``--int8``, "int4" with ``--int4``: the LM in
  4-bit weights, the image side int8) the graph file of each part:
  ``vision`` (pixel_values (1, 3, S, S) -> image_embeds (1, K, D), pooled (1, E), map_i),
  ``lm`` (inputs_embeds (1, T, D), past_keys / past_values (L, 1, H, P, hd) -> logits (1, V) of the
  last position, present_keys / present_values (L, 1, H, P + T, hd)) and ``grounding`` (map_i,
  pixel_values -> category (C,), pair (C, K) probabilities; absent without a grounding head);
- ``external_data`` (absent in older exports): per graph file, the side files holding its weights
  (``lm.onnx`` -> ``lm.onnx.data``; onnxruntime maps them rather than copying), checked like the
  graphs;
- ``embeddings``: the LM's input embedding table (``.npy``, (V, D) float32);
- ``lm``, ``vision``, ``tokens``, ``temperature``: shapes, preprocessing and ids, for reference
  and checks (the runtime takes the prompt, ids and temperature from the checkpoint's config.json,
  as the torch runtime does, and checks the ids against these).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import CheckpointError

MANIFEST_FILE = "manifest.json"
FORMAT = "octopus_ros.onnx_export"
FORMAT_VERSION = 1
DEFAULT_DIR = "onnx"  # inside the checkpoint directory
EMBEDDINGS_FILE = "embed_tokens.npy"
PARTS = ("vision", "lm", "grounding")
PRECISIONS = ("fp32", "int8", "int4")


def export_command(checkpoint: str | Path) -> str:
    """The command that writes the export of ``checkpoint`` (named in every missing-file error)."""
    return f"python -m octopus_ros.model.onnx_export_all {checkpoint} --int8"


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(directory: str | Path, checkpoint: str | Path) -> dict[str, Any]:
    """``directory``/manifest.json, checked for format; CheckpointError naming the file (and the
    export command when it is missing)."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(
            path,
            f"no ONNX export of {checkpoint} (missing {MANIFEST_FILE}); write it with: {export_command(checkpoint)}",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(path, f"cannot read the export manifest: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(path, f"not an ONNX export manifest (format must be {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"format_version must be {FORMAT_VERSION}, got {manifest.get('format_version')!r} (re-export)",
        )
    for key in ("weights_sha256", "files", "variants", "embeddings", "lm"):
        if key not in manifest:
            raise CheckpointError(path, f"missing entry {key!r} (re-export: {export_command(checkpoint)})")
    return manifest


def check_file(directory: str | Path, manifest: dict[str, Any], name: str, checkpoint: str | Path) -> Path:
    """The path of export file ``name`` after checking that it exists and has the recorded size
    and sha256; CheckpointError naming it otherwise."""
    path = Path(directory) / name
    entry = manifest["files"].get(name)
    if entry is None:
        raise CheckpointError(Path(directory) / MANIFEST_FILE, f"lists no file {name!r}")
    if not path.is_file():
        raise CheckpointError(path, f"missing from the ONNX export (re-export: {export_command(checkpoint)})")
    if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
        raise CheckpointError(
            path,
            f"damaged: size or sha256 differ from {MANIFEST_FILE} (re-export: {export_command(checkpoint)})",
        )
    return path
