#!/usr/bin/env bash
# What the browser tests (tests/test_browser.py) need beyond the Python packages: Debian's
# Chromium (Playwright drives it; it never downloads a browser), Debian's Noto CJK fonts (so
# Japanese and Chinese pages are readable in screenshots) and axe-core from the npm registry. Idempotent, and quiet when everything is already there. Installing Chromium needs
# root (apt-get).
set -eu  # POSIX sh too: `sh tests/setup.sh` works as well as bash
cd "$(dirname "$0")"

missing=""
[ -x /usr/bin/chromium ] || missing="chromium"
[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 \
    || missing="$missing fonts-noto-cjk"
if [ -n "$missing" ]; then
    echo "tests/setup.sh: installing Debian's$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq $missing >/dev/null
fi

if [ ! -f browser/node_modules/axe-core/axe.min.js ]; then
    echo "tests/setup.sh: installing axe-core (npm ci in tests/browser)" >&2
    (cd browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
