#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the test that opens the Snakemake report in a browser.
#
#   scripts/chromium.sh install   # the package (root; idempotent)
#   scripts/chromium.sh path      # the browser's executable
set -euo pipefail

PACKAGE=chromium-headless-shell
BINARY=/usr/bin/chromium-headless-shell

case ${1:-} in
install)
    if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q "install ok installed"; then
        exit 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "chromium: installing $PACKAGE needs root (apt-get)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$PACKAGE" >/dev/null
    ;;
path) echo "$BINARY" ;;
*)
    echo "usage: $0 install|path" >&2
    exit 2
    ;;
esac
