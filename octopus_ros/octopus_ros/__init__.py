"""octopus_ros: vision-driven actions for ROS 2 with functional-token multimodal models.

Rooms (import rules):
  octopus_ros.functions  function registry, call grammar, parser      (no torch, no rclpy)
  octopus_ros.model      vision tower, connector, LM, decoding, ckpts (torch, no rclpy)
  octopus_ros.data       scene renderer, instructions, datasets       (no rclpy)
  octopus_ros.training   multi-stage training and evaluation          (no rclpy)
  octopus_ros.nodes      thin ROS 2 nodes                             (rclpy, imported lazily)
"""

__version__ = "0.1.0"
