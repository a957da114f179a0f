"""Images without ROS: decoding image messages (rclpy or rosbags ones) to RGB arrays."""
