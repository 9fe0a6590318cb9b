#!/usr/bin/env bash
# Installs the system libraries swift-qlora needs (Debian/Ubuntu): OpenBLAS (loaded at run time)
# and LZ4. Does nothing when they are present. Needs root or sudo to install.
set -euo pipefail
missing=()
for package in libopenblas-dev liblz4-dev; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "install-deps: error: need root to install ${missing[*]} (apt-get install ${missing[*]})" >&2; exit 1
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
