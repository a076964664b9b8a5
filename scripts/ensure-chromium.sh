#!/usr/bin/env bash
# Headless Chromium for the tests that open the report and the service's page
# (tests/tasks/classification/evaluation/test_report_html.py, tests/serve/test_web_page.py).
# Debian's package; a test tool's own browser download is never used.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
"$(dirname "$0")/apt-install.sh" ensure-chromium chromium
