"""Test support shipped with the core: real PostgreSQL / Redis for tests, worker helpers, the
provider conformance suite (a pytest plugin, entry point ``pytest11``), and the base every
provider simulator is built on (``core.testing.simulator``: clock, faults, request log, truth;
``core.testing.sim_app``: the shared ``/_sim/`` control protocol)."""
