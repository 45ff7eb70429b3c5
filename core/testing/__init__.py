"""Test support shipped with the core: real PostgreSQL / Redis for tests, worker helpers, and the
provider conformance suite (a pytest plugin, entry point ``pytest11``)."""
