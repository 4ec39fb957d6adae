#!/usr/bin/env bash
# Train (-t t) or decode and score (-t i) on CPU; -n N > 1 launches N data-parallel ranks with msrun.
# Options: scripts/run_cpu.sh --help
exec bash "$(dirname "$0")/launch.sh" CPU "$@"
