"""The service's roles; light to import (the CLI's parser needs them, not a database)."""

from __future__ import annotations

# clinician: predict; admin: also read the audit log and manage keys
ROLES = ("clinician", "admin")
