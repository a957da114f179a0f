# Runtime environment for octopus_ros commands on one machine.
# Sourced by the Makefile targets and .ci/run; safe to source from a shell:
#   source scripts/env.sh
# Every value can be overridden by exporting it before sourcing.
_octopus_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export OCTOPUS_ROOT="${OCTOPUS_ROOT:-$_octopus_root}"
export VIRTUAL_ENV="${VIRTUAL_ENV:-$OCTOPUS_ROOT/.venv}"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Keep all DDS traffic on this machine (discovery included): shared memory with a large segment
# (big images are not dropped) + UDP bound to 127.0.0.1 + unicast discovery to 127.0.0.1.
_octopus_profile="$OCTOPUS_ROOT/octopus_ros/config/fastdds_localhost.xml"
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_octopus_profile}"
# The profile owns discovery, so the range is SYSTEM_DEFAULT: with LOCALHOST, rmw_fastrtps adds its
# own UDP transport, bound to 0.0.0.0 and every interface (octopus_ros/ros/dds_env.py). With another
# profile, LOCALHOST is the fallback that keeps discovery on the machine.
if [ "$FASTDDS_DEFAULT_PROFILES_FILE" = "$_octopus_profile" ]; then
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-SYSTEM_DEFAULT}"
else
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
fi
# glibc malloc settings that cut large-message copy cost (measured: 1080p median 17 -> 7 ms).
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-268435456}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1073741824}"
export MALLOC_TOP_PAD_="${MALLOC_TOP_PAD_:-67108864}"
# At most 2 malloc arenas: a node that loads its model on one thread and serves it on another,
# cycle after cycle, otherwise spreads it over up to 8 arenas per core (octopus_ros/heap.py).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# Nothing may be fetched from a model hub at run time.
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
unset _octopus_root _octopus_profile
