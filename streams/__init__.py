"""Kafka mode: the workers that decide and project the partitions of the log, and the adapter's side of it.

The worker (`worker.Worker`): `lifecycle` (partitions assigned, prepared, released), `catchup` (what
preparing reads from the log), `dispatcher` (the decide loop), `decider` and `transactions` (one
transaction per batch; the hand-sent one is `handoff.accel.kafka_txn`), `partition` (a partition's
store), `endpoint` and `queryapi` (reads and metrics over HTTP), `checks` (health).
The adapter (`client.KafkaService`, a facade): `commandbus`, `directory`, `reads`, `changefeed`.
Shared: `topics`, `records`, `fetch`, `logreader`, `logwriter`, `metrics`, `tokens`.
"""
