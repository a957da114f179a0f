"""Start octopus_node as a managed (lifecycle) node and bring it to 'active'.

    ros2 launch octopus_ros octopus.launch.py
    ros2 launch octopus_ros octopus.launch.py namespace:=robot1 params_file:=/path/to/octopus.yaml

Arguments: params_file (default: the package's config/octopus.yaml), namespace,
use_sim_time, autostart (emit configure, then activate once 'inactive'; false leaves
the node unconfigured for `ros2 lifecycle set`), log_level.

The node's entries are taken from params_file for its namespaced name (`octopus_node`,
`/**`, `/**/octopus_node`, `/<ns>/octopus_node` all apply), so one file serves any
namespace. If configure fails (bad model path, invalid routing), the failure is logged
and the node stays alive and unconfigured.

Written to the ROS 2 (Jazzy/Kilted) launch API; not run on the development machine,
which has no launch system.
"""

import os

import lifecycle_msgs.msg
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState

from octopus_ros.ros.launch_params import as_bool, node_parameters

NODE_NAME = "octopus_node"


def _launch_setup(context, *args, **kwargs):
    """Build the node once the arguments are known (their values pick its parameters)."""
    params_file = LaunchConfiguration("params_file").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    use_sim_time = as_bool(LaunchConfiguration("use_sim_time").perform(context))
    autostart = as_bool(LaunchConfiguration("autostart").perform(context))
    log_level = LaunchConfiguration("log_level").perform(context)

    parameters = node_parameters(params_file, NODE_NAME, namespace)
    # Lifecycle transitions come from launch's events below, not from the node's own
    # autostart timer (both at once would configure twice).
    parameters.update({"use_sim_time": use_sim_time, "autostart": False})

    node = LifecycleNode(
        package="octopus_ros",
        executable="octopus_node",
        name=NODE_NAME,
        namespace=namespace,
        parameters=[parameters],
        arguments=["--ros-args", "--log-level", log_level],
        output="screen",
        emulate_tty=True,
    )
    actions = [node]
    if not autostart:
        actions.append(LogInfo(msg=f"{NODE_NAME} started unconfigured (autostart:=false)"))
        return actions

    def change_state(transition_id):
        return EmitEvent(
            event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id)
        )

    actions += [
        # configuring -> inactive: activate.
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                start_state="configuring",
                goal_state="inactive",
                entities=[
                    LogInfo(msg=f"{NODE_NAME} configured; activating"),
                    change_state(lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE),
                ],
            )
        ),
        # configuring -> unconfigured: configure failed; the node keeps running.
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                start_state="configuring",
                goal_state="unconfigured",
                entities=[
                    LogInfo(
                        msg=f"{NODE_NAME} failed to configure (see its log); it stays unconfigured. "
                        "Fix the parameters and run: ros2 lifecycle set <node> configure"
                    )
                ],
            )
        ),
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                start_state="activating",
                goal_state="active",
                entities=[LogInfo(msg=f"{NODE_NAME} active")],
            )
        ),
        # Emitted at start; launch_ros waits for the node's lifecycle services.
        change_state(lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE),
    ]
    return actions


def generate_launch_description():
    """octopus_node (lifecycle) with its parameters file, namespace and auto-activation."""
    share = get_package_share_directory("octopus_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "octopus.yaml"),
                description="ROS 2 parameters file with an octopus_node (or /**) entry",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of octopus_node"),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="Use /clock (true in simulation)"
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="Configure and activate octopus_node through lifecycle events",
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="Logging level"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
