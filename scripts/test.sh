#!/usr/bin/env bash
# Sets up (dependencies and release build) and runs every test in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps-only
swift test -c release "$@"
