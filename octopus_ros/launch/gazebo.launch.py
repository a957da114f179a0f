"""octopus_node in a Gazebo (gz sim) home: camera in, /cmd_vel out.

    ros2 launch octopus_ros gazebo.launch.py
    ros2 launch octopus_ros gazebo.launch.py headless:=true

Starts:
  * Gazebo with worlds/octopus_home.sdf (ros_gz_sim's gz_sim.launch.py): a room with a
    table and coloured objects (red_cup, blue_bottle, green_box, yellow_ball, ...) and a
    small diff-drive robot, octopus_bot, whose camera publishes /camera/image_raw;
  * ros_gz_bridge's parameter_bridge with config/gz_bridge.yaml: the camera image and
    camera_info, /clock and odometry from Gazebo, /cmd_vel to the robot's diff drive;
  * octopus_node (octopus.launch.py, use_sim_time) and the demo actuator.

Speak to it with any ASR node, or by hand:
    ros2 topic pub --once /speech/text std_msgs/msg/String "{data: 'stop'}"

Requires ros_gz (ros-<distro>-ros-gz) and Gazebo Harmonic or newer. Written to the
ROS 2 launch API; not run on the development machine, which has no Gazebo.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from octopus_ros.ros.launch_params import as_bool, fully_qualified_name


def _launch_setup(context, *args, **kwargs):
    world = LaunchConfiguration("world").perform(context)
    headless = as_bool(LaunchConfiguration("headless").perform(context))
    namespace = LaunchConfiguration("namespace").perform(context)
    log_level = LaunchConfiguration("log_level").perform(context)
    share = get_package_share_directory("octopus_ros")

    # -r: run at start; -s --headless-rendering: server only, sensors still render.
    gz_args = f"-r -s --headless-rendering {world}" if headless else f"-r {world}"
    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("ros_gz_sim"), "launch", "gz_sim.launch.py")
        ),
        launch_arguments={"gz_args": gz_args, "on_exit_shutdown": "true"}.items(),
    )
    bridge = Node(
        package="ros_gz_bridge",
        executable="parameter_bridge",
        name="gz_bridge",
        parameters=[
            {"config_file": LaunchConfiguration("bridge_config").perform(context), "use_sim_time": True}
        ],
        output="screen",
    )
    octopus = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "octopus.launch.py")),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file").perform(context),
            "namespace": namespace,
            "use_sim_time": "true",
            "autostart": "true",
            "log_level": log_level,
        }.items(),
    )
    actuator = Node(
        package="octopus_ros",
        executable="demo_actuator",
        name="demo_actuator",
        parameters=[
            {
                "use_sim_time": True,
                "calls_topic": f"{fully_qualified_name('octopus_node', namespace)}/function_calls",
            }
        ],
        arguments=["--ros-args", "--log-level", log_level],
        output="screen",
    )
    return [gazebo, bridge, octopus, actuator]


def generate_launch_description():
    """Gazebo world + bridge + octopus_node + demo actuator."""
    share = get_package_share_directory("octopus_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "world",
                default_value=os.path.join(share, "worlds", "octopus_home.sdf"),
                description="SDF world to load",
            ),
            DeclareLaunchArgument(
                "bridge_config",
                default_value=os.path.join(share, "config", "gz_bridge.yaml"),
                description="ros_gz_bridge YAML: which topics cross between Gazebo and ROS",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "octopus.yaml"),
                description="Parameters file for octopus_node",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of octopus_node"),
            DeclareLaunchArgument(
                "headless", default_value="false", description="Run the Gazebo server without its GUI"
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="Logging level"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
