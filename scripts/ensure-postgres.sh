#!/usr/bin/env bash
# PostgreSQL server binaries for the audit-store tests (tests/serve/conftest.py starts a
# throwaway cluster on loopback from them; no system service is used or started).
# Debian's package (it also creates the `postgres` system user the tests run it as when root).
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-postgres: no PostgreSQL and no apt-get; install the PostgreSQL server by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "ensure-postgres: installing Debian's postgresql for the audit-store tests" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
