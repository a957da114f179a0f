"""Thin ROS 2 layer: nodes, message conversions and QoS. The only room that imports rclpy."""
