#!/bin/sh
# Installs the command-line anchors of the benchmarks (ffmpeg with libx264 / libx265) from Debian.
set -e
if command -v ffmpeg >/dev/null 2>&1; then
  echo "ffmpeg present: $(ffmpeg -version | head -1)"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends ffmpeg
ffmpeg -version | head -1
