#!/usr/bin/env bash
# The test command: installs the system libraries if needed, then runs every Swift test.
# No Python and no network beyond apt: fixtures are committed under Tests/Fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
swift test "$@"
