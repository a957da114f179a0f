"""The demo loop: simulated camera + scripted speech + octopus_node + demo actuator.

    ros2 launch octopus_ros demo.launch.py
    ros2 launch octopus_ros demo.launch.py scenario_file:=/path/to/scenario.yaml params_file:=/path/to/octopus.yaml

The speech script plays the scenario (it switches the simulated camera's scene, says
each utterance and scores the answer); when it exits, the whole launch shuts down.
octopus_node comes from octopus.launch.py (lifecycle-managed, auto-activated).

This is the robot/ROS-install version of `make demo` (octopus_ros.demo.run_demo), which
starts the same four processes without the launch system. Written to the ROS 2
launch API; not run on the development machine, which has no launch system.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    IncludeLaunchDescription,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from octopus_ros.ros.launch_params import as_bool, fully_qualified_name


def _launch_setup(context, *args, **kwargs):
    namespace = LaunchConfiguration("namespace").perform(context)
    scenario = LaunchConfiguration("scenario_file").perform(context)
    use_sim_time = as_bool(LaunchConfiguration("use_sim_time").perform(context))
    log_level = LaunchConfiguration("log_level").perform(context)
    octopus = fully_qualified_name("octopus_node", namespace)
    ros_args = ["--ros-args", "--log-level", log_level]
    common = {"use_sim_time": use_sim_time}

    camera = Node(
        package="octopus_ros",
        executable="sim_camera",
        name="sim_camera",
        parameters=[
            {
                **common,
                "scenario_file": scenario,
                "rate": float(LaunchConfiguration("camera_rate").perform(context)),
            }
        ],
        arguments=ros_args,
        output="screen",
    )
    actuator = Node(
        package="octopus_ros",
        executable="demo_actuator",
        name="demo_actuator",
        parameters=[{**common, "calls_topic": f"{octopus}/function_calls"}],
        arguments=ros_args,
        output="screen",
    )
    speech = Node(
        package="octopus_ros",
        executable="speech_script",
        name="speech_script",
        parameters=[
            {
                **common,
                "scenario_file": scenario,
                "node_name": octopus,
                "report_file": LaunchConfiguration("report_file").perform(context),
            }
        ],
        arguments=ros_args,
        output="screen",
    )
    octopus_launch = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("octopus_ros"), "launch", "octopus.launch.py")
        ),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file").perform(context),
            "namespace": namespace,
            "use_sim_time": str(use_sim_time).lower(),
            "autostart": "true",
            "log_level": log_level,
        }.items(),
    )
    end_with_script = RegisterEventHandler(
        OnProcessExit(
            target_action=speech,
            on_exit=[
                LogInfo(msg="speech_script finished the scenario; shutting the demo down"),
                EmitEvent(event=Shutdown(reason="demo scenario finished")),
            ],
        )
    )
    return [camera, octopus_launch, actuator, speech, end_with_script]


def generate_launch_description():
    """The four demo processes; the launch ends when the scenario does."""
    share = get_package_share_directory("octopus_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "octopus.yaml"),
                description="Parameters file for octopus_node",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of octopus_node"),
            DeclareLaunchArgument(
                "scenario_file",
                default_value=os.path.join(share, "config", "demo_scenario.yaml"),
                description="Demo scenario: scenes, utterances, expected calls",
            ),
            DeclareLaunchArgument("camera_rate", default_value="15.0", description="Simulated camera Hz"),
            DeclareLaunchArgument(
                "report_file", default_value="", description="Write the JSON summary here (empty: none)"
            ),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock"),
            DeclareLaunchArgument("log_level", default_value="info", description="Logging level"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
