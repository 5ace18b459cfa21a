"""The composition roots: one module per process builds that process's objects, and nothing else does.

- `handoff.bootstrap.serve`: ``handoff serve``: the embedded engine, or with ``--kafka`` the Kafka
  adapter, served over HTTP or stdio (`handoff.mcp.serve`);
- `handoff.bootstrap.stdio`: ``handoff stdio``: a relay to the data dir's shared engine;
- `handoff.bootstrap.worker`: ``handoff worker``: a Kafka-mode worker (`streams.worker`).

The audit commands build theirs in their runners (`handoff.audit.commands`), one store or Kafka reader
each. Each module's ``main(ns, env)`` takes the options parsed by `handoff.cli` and returns the exit
status; the CLI imports only the one it runs, so each process pays only for its own imports.
"""
