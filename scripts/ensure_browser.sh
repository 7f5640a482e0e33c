#!/usr/bin/env bash
# Makes sure Debian's Chromium is there for tests/test_demo.py, which drives the demo page in it
# (no browser can be downloaded by a test tool here). As root it installs the package, as
# `make data` installs the data set; otherwise it says which command to run.
set -euo pipefail
chromium=/usr/bin/chromium
[ -x "$chromium" ] && { echo "browser: $chromium"; exit 0; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "browser: installing Debian's chromium into $chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x "$chromium" ] && exit 0
fi
cat >&2 <<MSG
warning: no Chromium at $chromium, so the demo page's tests (tests/test_demo.py) will skip.
  Install it with: sudo apt-get install chromium
MSG
