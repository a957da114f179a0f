"""rosbag2 bags, written and read with the ``rosbags`` library (pure Python, no rclpy).

Format: rosbag2 **MCAP** storage, metadata version 8 — the default storage of Jazzy and Kilted,
read by ``ros2 bag info/play`` there and by ``rosbags`` anywhere. (Version 8 rather than the
pinned rosbags' newest, 9: Jazzy's rosbag2 writes and reads 8, Kilted reads both.) Every
connection carries its message definition, so the ``octopus_msgs`` types are readable where
``octopus_msgs`` is not installed.

Timestamps: a message's bag timestamp (``log_ns``) is the time the recorder received it, in
nanoseconds on the recorder's clock — what ``ros2 bag info`` shows and ``ros2 bag play`` paces
by. Image header stamps are kept as they were published.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BAG_VERSION = 8
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
STRING = "std_msgs/msg/String"
FUNCTION_CALL = "octopus_msgs/msg/FunctionCall"
OUTCOME = "octopus_msgs/msg/Outcome"
IMAGE_TYPES = (IMAGE, COMPRESSED)
OCTOPUS_MSGS = ("Argument", "FunctionCall", "Outcome")  # Argument first: FunctionCall uses it


class BagError(ValueError):
    """A bag that cannot be written or read as asked; the message names the bag."""


def octopus_msg_dir() -> Path:
    """The folder of octopus_msgs' ``.msg`` files: the ament share directory, else the source tree."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("octopus_msgs")) / "msg")
    except (ImportError, LookupError, OSError):  # no ament index, or no AMENT_PREFIX_PATH
        pass
    candidates.append(Path(sys.prefix) / "share" / "octopus_msgs" / "msg")  # a venv as the ROS prefix
    for folder in candidates:
        if (folder / "FunctionCall.msg").is_file():
            return folder
    from octopus_ros.paths import share_dir

    source = share_dir().parent / "octopus_msgs" / "msg"
    if source.is_dir():
        return source
    raise BagError("cannot find octopus_msgs' .msg files (neither installed nor in the source tree)")


@cache
def typestore() -> Any:
    """A rosbags typestore: ROS 2 Kilted's standard messages plus octopus_msgs."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    folder = octopus_msg_dir()
    types: dict[str, Any] = {}
    for name in OCTOPUS_MSGS:
        text = (folder / f"{name}.msg").read_text(encoding="utf-8")
        types.update(get_types_from_msg(text, f"octopus_msgs/msg/{name}"))
    store.register(types)
    return store


# ---------------------------------------------------------------------------------------- writing
class BagWriter:
    """A rosbag2 bag being written: ``add_topic`` once per topic, then ``write`` serialized CDR."""

    def __init__(self, path: str | Path, *, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f"{path}: storage must be one of {sorted(plugins)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: already exists (a bag is never overwritten)")
        # The outermost folder this writer creates (the bag's, or a missing parent of it): what
        # discard() removes, so that a start that fails leaves nothing behind to block a retry.
        self.created = self.path
        while not self.created.parent.exists() and self.created.parent != self.created:
            self.created = self.created.parent
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugins[storage])
        try:
            self._writer.open()
        except Exception as e:  # OSError (a folder it may not create), rosbags' WriterError
            self._remove_created()
            raise BagError(f"{self.path}: cannot create the bag: {e}") from e
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic in self._connections:
            raise BagError(f"{self.path}: topic {topic} added twice")
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore())
        self.counts[topic] = 0

    def write(self, topic: str, log_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[topic], int(log_ns), bytes(data))
        self.counts[topic] += 1

    def write_msg(self, topic: str, log_ns: int, msg: Any) -> None:
        """Write a rosbags message object (serialized here)."""
        msgtype = self._connections[topic].msgtype
        self.write(topic, log_ns, typestore().serialize_cdr(msg, msgtype))

    def close(self) -> None:
        self._writer.close()

    def discard(self) -> None:
        """Give up this bag (a recorder that failed to start): close it and remove every folder
        the writer created, so the same name can be used again."""
        try:
            self._writer.close()
        except Exception as e:  # removed anyway
            log.debug("%s: closing a discarded bag: %s", self.path, e)
        self._remove_created()

    def _remove_created(self) -> None:
        import shutil

        shutil.rmtree(self.created, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------- reading
@contextmanager
def open_reader(path: str | Path) -> Iterator[Any]:
    """A rosbags ``AnyReader`` opened on a rosbag2 folder; :class:`BagError` naming it if impossible."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path}: not a rosbag2 bag (no metadata.yaml)")
    reader = AnyReader([path], default_typestore=typestore())
    try:
        reader.open()
    except Exception as e:
        hint = _damage_hint(e)
        raise BagError(f"{path}: cannot open the bag: {str(e).rstrip('.') if hint else e}{hint}") from e
    try:
        yield reader
    finally:
        reader.close()


def _damage_hint(error: Exception) -> str:
    """What to do about a bag whose file has no proper end (``rosbags`` only says "File end magic
    is invalid"): the recorder was killed before it closed the bag (SIGKILL, power loss, full disk),
    so the MCAP file stops mid-way. The mcap CLI's ``mcap recover`` keeps what was written (then
    ``ros2 bag reindex`` rewrites metadata.yaml); else the run must be recorded again."""
    if "end magic" not in str(error).lower():
        return ""
    return (
        ": the file ends mid-way, the recording was not closed properly (recorder killed, disk full?). "
        "Rescue what was written with the mcap CLI (`mcap recover FILE.mcap -o fixed.mcap`, fixed.mcap "
        "in its place) and `ros2 bag reindex` the folder, or record the run again"
    )


@dataclass(frozen=True)
class FrameRef:
    """A camera message in a bag: where it is, when it was received and its header stamp."""

    topic: str
    msgtype: str
    log_ns: int
    stamp_ns: int  # header stamp (0 when the publisher left it unset)
    frame_id: str


@dataclass
class Utterance:
    """A message on the speech topic."""

    log_ns: int
    text: str


@dataclass
class Run:
    """What a bag of an octopus_node run holds, in bag-time order (images only as references)."""

    path: Path
    image_topic: str
    speech_topic: str
    frames: list[FrameRef] = field(default_factory=list)
    utterances: list[Utterance] = field(default_factory=list)
    calls: list[tuple[int, Any]] = field(default_factory=list)  # (log_ns, FunctionCall)
    outcomes: list[tuple[int, Any]] = field(default_factory=list)  # (log_ns, Outcome)

    def newest_frame(self, log_ns: int) -> FrameRef | None:
        """The newest frame the recorder had received at ``log_ns`` (None if none yet)."""
        best = None
        for frame in self.frames:
            if frame.log_ns > log_ns:
                break
            best = frame
        return best

    def frame_with_stamp(self, stamp_ns: int, tolerance_ns: int = 2_000) -> FrameRef | None:
        """The frame whose header stamp is ``stamp_ns``, within ``tolerance_ns`` (the last if several).

        The tolerance absorbs the node's round trip of a stamp through float seconds (about
        0.2 us at today's epoch); camera frames are milliseconds apart.
        """
        best, best_diff = None, tolerance_ns + 1
        for frame in self.frames:
            diff = abs(frame.stamp_ns - stamp_ns)
            if frame.stamp_ns > 0 and diff <= best_diff:
                best, best_diff = frame, diff
        return best if best_diff <= tolerance_ns else None


def _pick(path: Path, kind: str, wanted: str | None, found: dict[str, str], types: tuple[str, ...]) -> str:
    candidates = sorted(t for t, m in found.items() if m in types)
    if wanted:
        if wanted not in found:
            raise BagError(f"{path}: no topic {wanted} in the bag (topics: {sorted(found)})")
        if found[wanted] not in types:
            raise BagError(f"{path}: {wanted} is {found[wanted]}, not a {kind} topic ({', '.join(types)})")
        return wanted
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise BagError(f"{path}: no {kind} topic ({', '.join(types)}) in the bag (topics: {sorted(found)})")
    raise BagError(f"{path}: several {kind} topics {candidates}: choose one")


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def read_run(path: str | Path, *, image_topic: str | None = None, speech_topic: str | None = None) -> Run:
    """Index a bag recorded by ``octopus_record``: frames (metadata only), utterances, calls, outcomes."""
    path = Path(path)
    with open_reader(path) as reader:
        found = {c.topic: c.msgtype for c in reader.connections}
        run = Run(
            path=path,
            image_topic=_pick(path, "camera", image_topic, found, IMAGE_TYPES),
            speech_topic=_pick(path, "speech", speech_topic, found, (STRING,)),
        )
        wanted = [
            c
            for c in reader.connections
            if c.topic in (run.image_topic, run.speech_topic) or c.msgtype in (FUNCTION_CALL, OUTCOME)
        ]
        for conn, log_ns, raw in reader.messages(connections=wanted):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == run.image_topic:
                run.frames.append(
                    FrameRef(conn.topic, conn.msgtype, log_ns, stamp_ns(msg.header), msg.header.frame_id)
                )
            elif conn.topic == run.speech_topic:
                run.utterances.append(Utterance(log_ns, msg.data))
            elif conn.msgtype == FUNCTION_CALL:
                run.calls.append((log_ns, msg))
            else:
                run.outcomes.append((log_ns, msg))
    log.info(
        "%s: %d frames on %s, %d utterances on %s, %d calls, %d outcomes",
        path,
        len(run.frames),
        run.image_topic,
        len(run.utterances),
        run.speech_topic,
        len(run.calls),
        len(run.outcomes),
    )
    return run


def iter_messages(path: str | Path, topics: list[str]) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log_ns, serialized CDR) of ``topics``, in bag-time order."""
    with open_reader(path) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        missing = sorted(set(topics) - {c.topic for c in conns})
        if missing:
            raise BagError(f"{path}: no topic(s) {missing} in the bag")
        for conn, log_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, log_ns, bytes(raw)


def decode_image(msg: Any, msgtype: str) -> np.ndarray:
    """A deserialized Image or CompressedImage -> (H, W, 3) uint8 RGB (the node's own conversion)."""
    from octopus_ros.images.decode import compressed_msg_to_rgb, image_msg_to_rgb

    return compressed_msg_to_rgb(msg) if msgtype == COMPRESSED else image_msg_to_rgb(msg)


@lru_cache(maxsize=256)
def _load_frame(path: str, topic: str, log_ns: int) -> np.ndarray:
    with open_reader(path) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise BagError(f"{path}: no topic {topic} in the bag")
        if conns[0].msgtype not in IMAGE_TYPES:
            raise BagError(f"{path}: {topic} is {conns[0].msgtype}, not an image topic")
        for conn, t, raw in reader.messages(connections=conns, start=log_ns, stop=log_ns + 1):
            if t == log_ns:
                rgb = decode_image(reader.deserialize(raw, conn.msgtype), conn.msgtype)
                rgb.setflags(write=False)
                return rgb
    raise BagError(f"{path}: no message on {topic} at bag time {log_ns} ns")


def load_frame(path: str | Path, topic: str, log_ns: int) -> np.ndarray:
    """The image on ``topic`` received at bag time ``log_ns``, as a fresh (H, W, 3) uint8 RGB array.

    Decoded frames are cached (256), so a trainer that asks for the same frame every epoch
    reads the bag once. Raises :class:`BagError` (or ``ImageConversionError``) naming the problem.
    """
    return _load_frame(str(Path(path).resolve()), topic, int(log_ns)).copy()
