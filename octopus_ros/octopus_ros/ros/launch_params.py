"""Helpers for the launch files that need no launch system (so they are tested here).

A ROS 2 parameters file is keyed by fully qualified node name: ``octopus_node:`` means
``/octopus_node`` and does not apply once the node runs in a namespace (``/robot1/
octopus_node``). nav2 solves this with ``nav2_common``'s ``RewrittenYaml``; the launch
files here use :func:`node_parameters` instead, which picks the entries of a file that
apply to a node, with the matching rules of rcl (``/**`` any namespaces, ``*`` one
token), so that one ``octopus.yaml`` serves any namespace without a nav2 dependency.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


class ParamsFileError(ValueError):
    """A parameters file that cannot be read or is not in the ``node: ros__parameters:`` form."""


def fully_qualified_name(node_name: str, namespace: str = "") -> str:
    """``/ns/name`` from a node name and a namespace ("" or "/" = the root namespace)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{node_name.strip('/')}"


def _tokens_match(pattern: list[str], name: list[str]) -> bool:
    if not pattern:
        return not name
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_tokens_match(rest, name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    return (head == "*" or head == name[0]) and _tokens_match(rest, name[1:])


def key_matches(key: str, fqn: str) -> bool:
    """Whether a parameters-file node key (``octopus_node``, ``/**``, ``/**/octopus_node``,
    ``/robot1/octopus_node``, ``/*/octopus_node``) applies to the node named ``fqn``.

    A key without a leading ``/`` is taken as absolute, as rcl does.
    """
    key = "/" + key.strip().lstrip("/")
    return _tokens_match(key.strip("/").split("/"), fqn.strip("/").split("/"))


def node_parameters(params_file: str | Path, node_name: str, namespace: str = "") -> dict[str, Any]:
    """The ``ros__parameters`` of ``params_file`` that apply to ``namespace/node_name``.

    Entries are merged in file order, so a later matching entry overrides an earlier
    one (e.g. ``/**`` defaults first, then ``octopus_node`` specifics). Nested mappings
    are kept (launch_ros flattens them to dotted names). Raises
    :class:`ParamsFileError` for an unreadable file or one that is not a mapping of
    node names to ``{ros__parameters: {...}}``; a file with no entry for the node gives
    an empty dict and a warning.
    """
    path = Path(params_file)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ParamsFileError(f"{path}: cannot read parameters: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ParamsFileError(f"{path}: expected a mapping of node names at the top level")
    fqn = fully_qualified_name(node_name, namespace)
    merged: dict[str, Any] = {}
    for key, entry in data.items():
        if not key_matches(str(key), fqn):
            continue
        if not isinstance(entry, Mapping) or not isinstance(entry.get("ros__parameters"), Mapping):
            raise ParamsFileError(f"{path}: entry '{key}' has no 'ros__parameters' mapping")
        merged.update(entry["ros__parameters"])
    if not merged:
        log.warning("%s has no parameters for %s (keys: %s)", path, fqn, ", ".join(map(str, data)) or "none")
    return merged


def as_bool(value: Any) -> bool:
    """A launch argument's text (``true``/``false``, ``1``/``0``, ``yes``/``no``) as a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")
