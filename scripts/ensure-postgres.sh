#!/usr/bin/env bash
# PostgreSQL server binaries for the audit-store tests (tests/serve/conftest.py starts a
# throwaway cluster on loopback from them; no system service is used or started).
# Debian's package (it also creates the `postgres` system user the tests run it as when root).
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
"$(dirname "$0")/apt-install.sh" ensure-postgres postgresql
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
