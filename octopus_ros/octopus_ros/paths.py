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


MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_config_text(path: str | Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of a configuration file (a registry, a routing table, a safety screen).

    Raises OSError, naming what is wrong, for anything but a regular file of at most ``max_bytes``:
    a FIFO would block the reader (and a lifecycle transition) forever, ``/dev/zero`` would fill
    the memory. Callers handle it as any unreadable file."""
    import stat

    path = Path(path)
    info = path.stat()  # FileNotFoundError / PermissionError as usual; never blocks
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, socket or device)"
        )
        raise OSError(f"{path} is {kind}")
    if info.st_size > max_bytes:
        raise OSError(f"{path} has {info.st_size} bytes; a configuration file may have at most {max_bytes}")
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while it was read
        raise OSError(f"{path} has more than {max_bytes} bytes; a configuration file may have at most that")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise OSError(f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from e
