#!/usr/bin/env bash
# Regenerates assets/shoal-sample.mp4, the video `shoal serve` shares when given no files:
# ffmpeg's test pattern and a 440 Hz tone, 10 s, H.264/AAC, moov first (+faststart) so a
# browser starts playing from the first bytes. Made here, from nothing, so it is ours to ship.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=640x360:rate=30:duration=10" \
    -f lavfi -i "sine=frequency=440:duration=10" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 400k \
    -c:a aac -b:a 64k -movflags +faststart -shortest \
    "$ROOT/assets/shoal-sample.mp4"
ls -l "$ROOT/assets/shoal-sample.mp4"
