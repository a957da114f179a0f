"""The request engine between ROS and the model: pairing, safety, queueing, prefetch.

No rclpy here: the node (``octopus_ros.ros.octopus_node``) only converts messages and
calls into :class:`~octopus_ros.runtime.engine.ActionEngine`, so the whole policy is
testable without DDS.
"""
