"""Generic ROS message <-> plain-Python conversion, without rosidl_runtime_py.

``rosidl_runtime_py`` is not available from the PyPI ROS wheels, so this small,
introspection-based equivalent is used for logging, the demo's printout and tests.
It relies only on the ``get_fields_and_field_types()`` method every generated
Python message class has.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np


def _is_message(value: Any) -> bool:
    return hasattr(value, "get_fields_and_field_types")


def message_to_dict(msg: Any) -> dict[str, Any]:
    """Convert a ROS message to nested dicts/lists of plain Python values."""
    out: dict[str, Any] = {}
    for name in msg.get_fields_and_field_types():
        out[name] = _value_to_plain(getattr(msg, name))
    return out


def _value_to_plain(value: Any) -> Any:
    if _is_message(value):
        return message_to_dict(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
        return [_value_to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def fill_message(msg: Any, values: dict[str, Any]) -> Any:
    """Set fields of ``msg`` from a dict as produced by :func:`message_to_dict`; returns ``msg``.

    Nested messages are filled recursively; the element class of a sequence of
    messages is found from the message's ``SLOT_TYPES`` introspection data.
    """
    fields = msg.get_fields_and_field_types()
    for name, value in values.items():
        if name not in fields:
            raise KeyError(f"{type(msg).__name__} has no field {name!r}")
        current = getattr(msg, name)
        if _is_message(current):
            fill_message(current, value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            element_type = _sequence_element_class(msg, name)
            setattr(msg, name, [fill_message(element_type(), v) for v in value])
        else:
            setattr(msg, name, value)
    return msg


def _sequence_element_class(msg: Any, field: str):
    names = list(msg.get_fields_and_field_types())
    slot = msg.SLOT_TYPES[names.index(field)]
    value_type = getattr(slot, "value_type", None)
    if value_type is None or not hasattr(value_type, "namespaces"):
        raise TypeError(f"field {field!r} of {type(msg).__name__} is not a sequence of messages")
    module = importlib.import_module(".".join(value_type.namespaces))
    return getattr(module, value_type.name)
