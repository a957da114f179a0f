"""Where the package's data lives: config/, models/, launch/, worlds/.

In a source or editable install the folders sit next to the Python package
(``octopus_ros/config`` beside ``octopus_ros/octopus_ros``). In a colcon/apt
install they are in the ament share directory. Both are supported.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

PACKAGE_NAME = "octopus_ros"


@cache
def share_dir() -> Path:
    """Return the package's share directory (source tree first, then the ament index)."""
    source = Path(__file__).resolve().parents[1]
    if (source / "package.xml").is_file() and (source / "config").is_dir():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError as e:  # pragma: no cover - only without ROS and outside the source tree
        raise FileNotFoundError(
            f"cannot locate the {PACKAGE_NAME} share directory: not a source tree and no ament_index_python"
        ) from e
    return Path(get_package_share_directory(PACKAGE_NAME))


def config_path(name: str) -> Path:
    """Path of a file in config/, e.g. ``config_path('functions.yaml')``."""
    return share_dir() / "config" / name


def default_model_dir() -> Path:
    """Directory of the bundled default model checkpoint."""
    return share_dir() / "models" / "octopus_tiny"
