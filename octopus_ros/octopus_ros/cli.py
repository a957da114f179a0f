"""What the command-line tools share (no torch, no rclpy): argparse types that check a value's range
when the command line is read."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def number(
    kind: type = int,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], Any]:
    """An argparse ``type``: a finite ``kind`` (int or float) in a range (``low``/``high``, each
    inclusive unless ``low_open``/``high_open``). argparse puts the flag before its message
    ("argument --n: must be an integer >= 1, got '-1'"), so a value no run could use is refused when
    the command line is read, naming the flag, and not minutes later where the run first uses it, or
    never (a negative count that silently draws nothing). Every command-line tool uses it."""
    what = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        bounds = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        bounds = f"{'<' if high_open else '<='} {high:g}"
    else:
        bounds = ""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (low is not None and (value < low or (low_open and value == low))) or (
            high is not None and (value > high or (high_open and value == high))
        ):
            raise argparse.ArgumentTypeError(f"must be {what} {bounds}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} {bounds}".strip()  # what argparse names in its own messages
    return parse
