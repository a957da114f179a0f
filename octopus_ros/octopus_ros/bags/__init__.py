"""rosbag2 bags of a robot's runs: write, read, label and replay them, with no rclpy.

- :mod:`octopus_ros.bags.io`: the bag format (rosbag2, MCAP storage, written and read with the
  ``rosbags`` library), message types (``octopus_msgs`` included) and frame decoding.
- :mod:`octopus_ros.bags.labels`: a bag -> a labels file (one line per utterance with the call
  the node made) -> after the user's corrections, records (:mod:`octopus_ros.data.records`).
- :mod:`octopus_ros.bags.replay`: offline replay (the model reads the bag, no DDS) and scoring.

The recorder and the online replay are ROS nodes: ``octopus_ros.ros.record`` and
``octopus_ros.ros.replay``.
"""
