"""Checkpoint directory format (no pickle anywhere):

  config.json        {"format", "format_version", "model": OctopusConfig, "weights": {file, sha256, bytes}}
  model.safetensors  all weights (tied tensors stored once)
  tokenizer.json, tokenizer_config.json   the tokenizer (transformers save_pretrained)
  functions.yaml     copy of the function registry the model was trained for (optional)
  metrics.json       free-form evaluation figures (optional)

``load_checkpoint`` verifies the sha256 and the shapes and raises :class:`CheckpointError`
naming the file and the problem. ``load_checkpoint(path, precision="int8")`` builds the int8
model straight from the weights file, one tensor at a time, never holding the fp32 model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from octopus_ros.lean.errors import (  # one class, one file name, one reader for both runtimes
    CONFIG_FILE,
    CheckpointError,
    read_config_json,
)
from octopus_ros.lean.manifest import sha256_file  # one file hash for checkpoints and ONNX exports

from .config import ConfigError, OctopusConfig, resolve_config
from .modeling import OctopusModel, build_modules
from .tokenizer import check_tokenizer_matches, load_tokenizer

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "octopus_ros.checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
FUNCTIONS_FILE = "functions.yaml"
METRICS_FILE = "metrics.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    config: OctopusConfig
    model: OctopusModel
    tokenizer: Any
    functions_path: Path | None = None  # functions.yaml inside the checkpoint, if present
    metrics: dict[str, Any] = field(default_factory=dict)


def _portable_config(config: OctopusConfig) -> OctopusConfig:
    """The config as stored in a checkpoint: external weight references dropped."""
    vision = dataclasses.replace(config.vision, checkpoint=None, model_name=None)
    return dataclasses.replace(config, vision=vision, lm_path=None)


def _unique_state_dict(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict with tied tensors stored once, and the alias map {dropped name: kept name}."""
    state, aliases, seen = {}, {}, {}
    for name, tensor in model.state_dict().items():
        key = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.dtype,
        )
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        state[name] = tensor.detach().contiguous()
    return state, aliases


def save_checkpoint(
    path: str | Path,
    model: OctopusModel,
    tokenizer,
    *,
    functions: str | Path | Any | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory (created if needed; files are replaced atomically).

    ``functions``: the function registry the model was trained for (a functions.yaml path or a
    FunctionRegistry); ``metrics``: a JSON-serialisable dict.
    """
    from safetensors.torch import save_file

    for p in model.parameters():
        if p.dtype != torch.float32 or type(p) is not torch.nn.Parameter:
            raise ValueError("save_checkpoint expects the fp32 training model (not a quantized/cast copy)")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state, aliases = _unique_state_dict(model)
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "aliases": json.dumps(aliases)})
    os.replace(tmp, path / WEIGHTS_FILE)

    tokenizer.save_pretrained(str(path))
    if functions is not None:
        _write_functions(path / FUNCTIONS_FILE, functions)
    if metrics is not None:
        _write_json(path / METRICS_FILE, metrics)

    record = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "model": _portable_config(model.config).to_dict(),
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": sha256_file(path / WEIGHTS_FILE),
            "bytes": (path / WEIGHTS_FILE).stat().st_size,
            "num_tensors": len(state),
        },
        "tokenizer_size": len(tokenizer),
    }
    _write_json(path / CONFIG_FILE, record)
    log.info("saved checkpoint to %s (%d tensors)", path, len(state))
    return path


def _write_functions(dst: Path, functions) -> None:
    """Copy a functions.yaml file, or write a FunctionRegistry (its source file if it has one)."""
    src = Path(functions.source) if hasattr(functions, "to_dict") else Path(functions)
    if src.is_file():
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
        return
    if not hasattr(functions, "to_dict"):
        raise FileNotFoundError(f"function registry file not found: {src}")
    import yaml

    dst.write_text(yaml.safe_dump(functions.to_dict(), allow_unicode=True, sort_keys=False), encoding="utf-8")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_checkpoint_config(path: str | Path) -> tuple[OctopusConfig, dict[str, Any]]:
    """Parse and check ``config.json``; returns (model config, whole record)."""
    file, record = read_config_json(path)
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(file, f"not an octopus_ros checkpoint config (format != {CHECKPOINT_FORMAT!r})")
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            file, f"format_version {record.get('format_version')} is not supported ({FORMAT_VERSION})"
        )
    for key in ("model", "weights"):
        if not isinstance(record.get(key), dict):
            raise CheckpointError(file, f"missing or malformed {key!r} section")
    try:
        config = resolve_config(OctopusConfig.from_dict(record["model"]))
    except (ConfigError, TypeError) as e:
        raise CheckpointError(file, f"invalid model config: {e}") from e
    return config, record


def _weights_file(path: Path, record: dict[str, Any]) -> Path:
    """The weights file named by ``config.json``, checked against its recorded size and sha256."""
    weights = record["weights"]
    file = path / weights.get("file", WEIGHTS_FILE)
    if not file.is_file():
        raise CheckpointError(file, "missing")
    size = file.stat().st_size
    if "bytes" in weights and size != weights["bytes"]:
        what = "truncated" if size < weights["bytes"] else "larger than recorded"
        raise CheckpointError(file, f"{what}: {size} bytes on disk, config.json records {weights['bytes']}")
    digest = sha256_file(file)
    if digest != weights.get("sha256"):
        raise CheckpointError(
            file,
            f"sha256 mismatch (file {digest[:16]}..., config.json {str(weights.get('sha256'))[:16]}...): corrupt or modified",
        )
    return file


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(file, f"unreadable safetensors file ({e})") from e


def check_state(
    expected: dict[str, tuple[tuple[int, ...], torch.dtype]],
    found: dict[str, tuple[tuple[int, ...], torch.dtype]],
    aliases: set[str] | dict[str, str],
    file: str | Path,
) -> None:
    """CheckpointError naming ``file`` unless the tensors ``found`` in it (name -> (shape, dtype))
    are exactly the ``expected`` ones, less the tied ``aliases`` stored under another name."""
    missing = [k for k in expected if k not in found and k not in aliases]
    unexpected = [k for k in found if k not in expected]
    wrong = [
        f"{k} {found[k][0]} vs {v[0]}" for k, v in expected.items() if k in found and found[k][0] != v[0]
    ]
    # A floating-point parameter stored as an integer (or bool) tensor would be cast silently by
    # load_state_dict: refuse it (e.g. weights "quantised" by truncation to int8).
    kinds = [
        f"{k} {found[k][1]} for {v[1]}"
        for k, v in expected.items()
        if k in found and v[1].is_floating_point and not found[k][1].is_floating_point
    ]
    if missing or unexpected or wrong or kinds:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s) e.g. {unexpected[:3]}")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es) e.g. {wrong[:3]} (file vs config)")
        if kinds:
            parts.append(f"{len(kinds)} tensor(s) of a non-floating dtype e.g. {kinds[:3]}")
        raise CheckpointError(file, "weights do not match config.json: " + "; ".join(parts))


def load_state(model: OctopusModel, state: dict[str, torch.Tensor], file: str | Path) -> None:
    """Copy ``state`` into ``model``; tied tensors may be absent. Mismatches -> CheckpointError."""
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    _, aliases = _unique_state_dict(model)
    check_state(expected, {k: (tuple(v.shape), v.dtype) for k, v in state.items()}, aliases, file)
    model.load_state_dict(state, strict=False)


def _expected_tensors(
    config: OctopusConfig,
) -> tuple[dict[str, tuple[tuple[int, ...], torch.dtype]], dict[str, str]]:
    """(state-dict name -> (shape, dtype), {tied name: the name it is stored under}) of the fp32
    model that ``config`` builds, made on the meta device (no memory, no initialisation). The
    tied names are those ``save_checkpoint`` drops: every one after the first in state-dict order."""
    with torch.device("meta"):
        model = build_modules(config)
    expected: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    tied: dict[str, str] = {}
    first: dict[int, str] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        expected[name] = (tuple(t.shape), t.dtype)
        if id(t) in first:
            tied[name] = first[id(t)]
        else:
            first[id(t)] = name
    return expected, tied


def _load_int8_model(file: Path, config: OctopusConfig) -> OctopusModel:
    """The checkpoint's model built directly in int8 (``precision.build_int8``): each tensor is
    read from the file on its own (plain reads, no memory map) and quantized before the next, so
    no whole fp32 copy is ever held. The same int8 model as
    ``apply_precision(load_checkpoint(path).model, precision="int8")``."""
    from .precision import SafetensorsWeights, build_int8

    expected, tied = _expected_tensors(config)
    try:
        weights = SafetensorsWeights(file, aliases=tied)
    except (ValueError, OSError) as e:
        raise CheckpointError(file, f"unreadable safetensors file ({e})") from e
    with weights:
        check_state(expected, weights.tensors, tied, file)
        try:
            return build_int8(config, weights)
        except (OSError, KeyError) as e:  # a read that failed after the checks
            raise CheckpointError(file, f"unreadable safetensors file ({e})") from e


def _bad_tokenizer_file(path: Path, default: Path) -> Path:
    """The tokenizer file that is not valid JSON (the one to name in the error), else ``default``."""
    for file in sorted(path.glob("*.json")):
        if file.name in (CONFIG_FILE, METRICS_FILE) or "token" not in file.name:
            continue
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, OSError):
            return file
    return default


def load_checkpoint(path: str | Path, *, precision: str = "fp32") -> Checkpoint:
    """Load and verify a checkpoint directory. The model is returned in eval mode on the CPU:
    fp32, or with ``precision="int8"`` built directly in int8 from the weights file, tensor by
    tensor (the same model as ``apply_precision(load_checkpoint(path).model, precision="int8")``
    without ever holding the fp32 one: see :func:`_load_int8_model`)."""
    if precision not in ("fp32", "int8"):
        raise ValueError(
            f"load_checkpoint loads fp32 or int8, not {precision!r} (apply_precision afterwards)"
        )
    path = Path(path)
    config, record = read_checkpoint_config(path)
    file = _weights_file(path, record)  # size and sha256 checked before anything is built
    state = _read_weights(file) if precision == "fp32" else None

    tok_file = path / TOKENIZER_FILE
    if not tok_file.is_file():
        raise CheckpointError(tok_file, "missing")
    try:
        tokenizer = load_tokenizer(path)
    except Exception as e:  # tokenizers raises several exception types for a bad file
        raise CheckpointError(_bad_tokenizer_file(path, tok_file), f"unreadable tokenizer ({e})") from e
    problems = check_tokenizer_matches(tokenizer, config)
    if problems:
        raise CheckpointError(tok_file, "special tokens do not match config.json: " + "; ".join(problems[:3]))

    if state is None:
        model = _load_int8_model(file, config)
    else:
        model = build_modules(config)
        load_state(model, state, file)
        del state
    vocab = model.lm.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise CheckpointError(
            tok_file, f"tokenizer has {len(tokenizer)} tokens but the LM only {vocab} embeddings"
        )

    metrics: dict[str, Any] = {}
    metrics_file = path / METRICS_FILE
    if metrics_file.is_file():
        try:
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(metrics_file, f"not valid JSON ({e})") from e
    functions = path / FUNCTIONS_FILE
    return Checkpoint(
        path=path,
        config=config,
        model=model.eval(),
        tokenizer=tokenizer,
        functions_path=functions if functions.is_file() else None,
        metrics=metrics,
    )
