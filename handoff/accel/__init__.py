"""Accelerators: the only code that reaches into private internals of its dependencies, each gated by version.

Every module here replaces a public path that is slower on the hot path, and each is a leaf: it
imports third-party code only, never the rest of handoff (what it needs from handoff is passed in).
`gate.ACCELERATORS` lists them with the exact versions they were tested against; one turns on only
when those versions are installed and its switch is on, else the public path runs and one WARNING
says why. Modules here are imported only after their gate said yes: on other versions the private
names they use may not exist. The switches are read by the composition roots (``handoff.config``)
and passed down as ``fast_path`` / ``accel`` arguments.

==================  ======================================  =======================================
accelerator         replaces (public path)                  switch
==================  ======================================  =======================================
mcp-fast-path       the SDK's streamable-HTTP transport     ``HANDOFF_FAST_PATH=0``
                    and request kernel for hot requests
uvicorn-coalesce    uvicorn's httptools protocol as is      ``HANDOFF_FAST_PATH=0``
                    (two writes, two segments per reply)
mcp-session-close   legacy subscribers forgotten only on    none (the version gate only: the
                    unsubscribe (no hook on disconnect)     public path is not faster, it leaks)
kafka-txn           aiokafka's ``producer.transaction()``   ``HANDOFF_KAFKA_ACCEL=0``
kafka-fetch         a read_committed ``AIOKafkaConsumer``   ``HANDOFF_KAFKA_ACCEL=0``
kafka-open-probe    waiting on topic leaders only           ``HANDOFF_KAFKA_ACCEL=0``
==================  ======================================  =======================================
"""
