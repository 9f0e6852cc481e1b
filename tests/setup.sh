#!/usr/bin/env bash
# What the browser tests (tests/test_browser.py) need beyond the Python packages: Debian's
# Chromium (Playwright drives it; it never downloads a browser) and axe-core from the npm
# registry. Idempotent, and quiet when everything is already there. Installing Chromium needs
# root (apt-get).
set -eu  # POSIX sh too: `sh tests/setup.sh` works as well as bash
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
    echo "tests/setup.sh: installing Debian's chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi

if [ ! -f browser/node_modules/axe-core/axe.min.js ]; then
    echo "tests/setup.sh: installing axe-core (npm ci in tests/browser)" >&2
    (cd browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
