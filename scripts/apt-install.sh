#!/usr/bin/env bash
# apt-install.sh WHO PACKAGE...: install Debian packages for the tests (sudo when not
# root). The package lists are refreshed at most once an hour, so the ensure-*.sh scripts
# that make test runs one after another share one `apt-get update`.
set -euo pipefail
who=$1
shift
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: missing and no apt-get; install $* by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "$who: installing Debian's $*" >&2
if ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | grep -q .; then
    $SUDO apt-get update -qq
fi
# policy-rc.d may refuse to start a package's service in a container: that is fine, the
# tests start their own servers
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
