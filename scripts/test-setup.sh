#!/usr/bin/env bash
# What the tests need from outside PyPI: Debian's chromium for the browser test of the web page
# (Playwright's own browser download cannot work offline). Installed only when missing and when
# running as root with apt-get; otherwise the browser test skips and says why.
set -uo pipefail

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "paperlens: installing chromium for the browser test" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
            || echo "paperlens: could not install chromium; the browser test will be skipped" >&2
    else
        echo "paperlens: chromium is missing and this is not root; the browser test will be skipped" >&2
    fi
fi
exit 0
