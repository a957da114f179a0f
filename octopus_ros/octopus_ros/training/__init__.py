"""Multi-stage training and evaluation of Octopus models (no rclpy)."""
