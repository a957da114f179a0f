#!/usr/bin/env bash
# One-command, idempotent set-up of a development machine (x86_64, Python 3.11):
#   1. .venv with the pinned ROS 2 Kilted wheels, torch, model and test packages;
#   2. octopus_msgs built with cmake and installed into the venv (the venv is the ROS prefix);
#   3. octopus_ros installed in editable mode.
# Robots use apt ROS 2 and colcon instead; see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
echo "[setup] installing pinned requirements (torch comes from this machine's local wheel cache)"
# (sed drops the warnings this machine's pip config prints for its absent local indexes)
"$VENV/bin/python" -m pip install --quiet -r requirements.txt 2>&1 \
  | sed '/is ignored: it is neither a file nor a directory/d'


bash scripts/build_msgs.sh

echo "[setup] installing octopus_ros (editable)"
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation --config-settings editable_mode=compat -e octopus_ros

# Smoke check: the interface package and rclpy import from the venv.
source scripts/env.sh
python - <<'PY'
import rclpy  # noqa: F401
from octopus_msgs.msg import FunctionCall, Outcome  # noqa: F401
from octopus_msgs.srv import Ask  # noqa: F401
import octopus_ros  # noqa: F401
print("[setup] rclpy, octopus_msgs and octopus_ros import OK")
PY
# The natural decline corpus for training (Debian fortunes + unsafe-request patterns); only
# training with --decline-corpus needs it, so a machine without apt-get just skips it.
python -m octopus_ros.data.decline_corpus || echo "[setup] WARNING: decline corpus not built (training option decline_corpus unavailable)"
# English verb synonyms for training (Debian's wordnet-base; data/synonyms.py): only training with
# --synonyms needs them.
python -m octopus_ros.data.synonyms || echo "[setup] WARNING: synonym table not built (training option synonyms unavailable)"
echo "[setup] done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
