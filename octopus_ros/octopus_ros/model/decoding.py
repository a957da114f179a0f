"""Grammar-constrained greedy decoding with functional tokens and jump-forward.

The decoder is torch-free and lives in :mod:`octopus_ros.lean.decoding`, shared by the torch
runtime (model/runtime.py, model/vlm.py) and the onnxruntime one (lean/runtime.py); this module
keeps the names the model room has always used. It takes torch logits as they are (one
conversion to numpy per pass).
"""

from octopus_ros.lean.decoding import (  # noqa: F401 - re-exported: the model room's API
    ConstrainedDecoder,
    DecodeResult,
    Grammar,
    TokenTable,
    _bytes_to_unicode,
    as_numpy,
    log_confidence,
    split_utf8,
)
