#!/usr/bin/env bash
# Build the octopus_msgs interface package with plain cmake and install it into the venv,
# which the ros-* wheels use as their ROS prefix. Idempotent and incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="${VENV:-$ROOT/.venv}"
BUILD="$ROOT/build/octopus_msgs"
PYBIN="$VENV/bin/python"

# Some ros-* wheels export cmake targets whose include directories point at the wheel
# build machine (/opt/python/cp311-cp311/...). CMake rejects imported targets whose
# include directories do not exist, so point them at this interpreter and numpy.
PY_INC=$("$PYBIN" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NP_INC=$("$PYBIN" -c 'import numpy; print(numpy.get_include())')
"$PYBIN" "$ROOT/scripts/fix_wheel_cmake.py" "$VENV" "$PY_INC" "$NP_INC"

mkdir -p "$ROOT/build"
echo "[msgs] configuring and building octopus_msgs into $VENV"
export AMENT_PREFIX_PATH="$VENV"
cmake -S "$ROOT/octopus_msgs" -B "$BUILD" \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PYBIN" \
  -DBUILD_TESTING=OFF > "$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" > "$BUILD.build.log" 2>&1 || { tail -50 "$BUILD.build.log"; exit 1; }
cmake --install "$BUILD" > "$BUILD.install.log" 2>&1 || { tail -50 "$BUILD.install.log"; exit 1; }
echo "[msgs] octopus_msgs installed"
