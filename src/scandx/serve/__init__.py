"""The inference service (``scandx serve``): REST API, keys and roles, audit trail."""
