"""glibc heap controls: the one place the package talks to the C library's allocator.

Used by the node (arenas at start, a trim after ``cleanup``) and by the model builders
(``model/precision.release_memory`` after int8 quantization frees the fp32 copies). Pure Python
(ctypes), no torch or rclpy.

Why, for long-lived nodes that load and free a model many times:

Measured on octopus_node (bundled model, 2-core x86_64, configure/activate/one utterance/
deactivate/cleanup cycles driven over DDS, as ``benchmarks/reliability.py --only lifecycle`` does):

* glibc gives threads their own malloc arenas (up to 8 per core). The model is loaded by
  whichever executor thread runs ``configure``, and a fresh engine thread serves each
  activation, so over the first ~20 cycles the model's memory is spread over up to 16 arenas,
  each keeping what it once held: active RSS 1,125 MB at cycle 1, 1,241 MB at cycle 10,
  1,262 MB at cycle 100 (+1.6 % from cycle 10; more on machines with more cores).
  With at most 2 arenas (``MALLOC_ARENA_MAX=2``, set by ``scripts/env.sh``, or
  :func:`limit_malloc_arenas` before any thread starts): 1,124 / 1,167 / 1,172 MB (+0.4 %).
* ``MALLOC_TRIM_THRESHOLD_`` is 1 GB in ``scripts/env.sh`` (it makes large-message copies
  cheaper), so memory freed at ``cleanup`` would stay in the process: :func:`release_free_memory`
  returns it (about 40 MB, the model, right after cleanup).

Both are no-ops (returning False) where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h


@functools.cache  # found once: find_library searches the system's library paths
def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # not glibc (musl has neither)
    return libc


def limit_malloc_arenas(max_arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas. Only effective before the process has started many threads."""
    if max_arenas < 1:
        raise ValueError(f"max_arenas must be >= 1, got {max_arenas}")
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, int(max_arenas)))


def release_free_memory() -> bool:
    """Return the heap's free memory to the operating system (glibc ``malloc_trim(0)``).

    True when some memory was released.
    """
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
