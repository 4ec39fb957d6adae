#!/usr/bin/env bash
# Train (-t t) or decode and score (-t i) on Ascend; -n N > 1 launches N data-parallel ranks with msrun.
# Options: scripts/run_ascend.sh --help
exec bash "$(dirname "$0")/launch.sh" Ascend "$@"
