#!/usr/bin/env bash
# Build octopus_msgs and octopus_ros with colcon in a scratch workspace, the way a robot
# builds them, against the ROS prefix in the venv. Then import the built messages from the
# install space only. usage: colcon_check.sh [WORKSPACE_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VIRTUAL_ENV:-$ROOT/.venv}"
WS="${1:-$ROOT/build/colcon_ws}"
rm -rf "$WS"
mkdir -p "$WS/src"
ln -s "$ROOT/octopus_msgs" "$WS/src/octopus_msgs"
ln -s "$ROOT/octopus_ros" "$WS/src/octopus_ros"
cd "$WS"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV"
"$VENV/bin/colcon" --log-base "$WS/log" build --base-paths src --build-base "$WS/build" --install-base "$WS/install" \
  --merge-install --event-handlers console_direct- \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
# The install space (not the venv) must provide the interfaces and the package's share files.
site=$(echo "$WS"/install/lib/python3*/site-packages)
test -f "$WS/install/share/octopus_msgs/msg/FunctionCall.msg"
test -f "$WS/install/share/octopus_ros/package.xml"
test -f "$WS/install/share/ament_index/resource_index/packages/octopus_ros"
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" LD_LIBRARY_PATH="$WS/install/lib:$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$VENV/bin/python" - "$WS" <<'PY'
import sys
import octopus_msgs.msg as m
assert m.__file__.startswith(sys.argv[1]), m.__file__
from rclpy.serialization import serialize_message, deserialize_message
msg = m.FunctionCall(function_name="stop")
assert deserialize_message(serialize_message(msg), m.FunctionCall) == msg
print("[colcon] octopus_msgs from the colcon install space:", m.__file__)
PY
echo "[colcon] build OK: $WS/install"
