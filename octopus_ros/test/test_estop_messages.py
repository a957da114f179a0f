"""Which e-stop messages the node takes as new (``fresh_estop``): the node reads the e-stop through
two subscriptions, so one message can arrive twice; with and without the publisher's gid in
rclpy's MessageInfo (it came in 2025: an older rclpy, as Jazzy's may be, has no gid)."""

from __future__ import annotations

import collections

from octopus_ros.ros.octopus_node import fresh_estop


def _info(seq, gid=None, sent=0):
    info = {"publication_sequence_number": seq, "source_timestamp": sent}
    if gid is not None:
        info["publisher_gid"] = gid
    return info


def test_with_the_gid_a_message_seen_or_older_is_dropped_per_publisher():
    seen = collections.OrderedDict()
    assert fresh_estop(seen, _info(1, b"a", 10))
    assert not fresh_estop(seen, _info(1, b"a", 10))  # the same message through the other subscription
    assert fresh_estop(seen, _info(3, b"a", 30))
    assert not fresh_estop(seen, _info(2, b"a", 20))  # older than one already acted on
    assert fresh_estop(seen, _info(1, b"b", 40))  # another publisher starts at 1


def test_without_the_gid_a_restarted_publisher_is_not_taken_for_a_stale_one():
    seen = collections.OrderedDict()
    assert fresh_estop(seen, _info(5, sent=100))
    assert not fresh_estop(seen, _info(5, sent=100))  # the duplicate through the second subscription
    assert fresh_estop(seen, _info(1, sent=200))  # a restarted (or second) publisher's first message
    assert fresh_estop(seen, _info(6, sent=300))
    assert fresh_estop(seen, {})  # no sequence number at all: always acted on
    for k in range(300):
        fresh_estop(seen, _info(k, sent=1000 + k))
    assert len(seen) == 256
