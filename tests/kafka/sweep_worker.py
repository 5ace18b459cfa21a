"""A worker process that sweeps often, for the expiry failover test (the CLI's worker sweeps every 30 s).

    python tests/kafka/sweep_worker.py BOOTSTRAP TOPIC_PREFIX PARTITIONS DATA_DIR
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from streams.topics import Topics
from streams.worker import Worker, WorkerConfig


async def main(bootstrap: str, prefix: str, partitions: str, data_dir: str) -> None:
    topics = Topics(prefix, int(partitions))
    worker = Worker(WorkerConfig(bootstrap=bootstrap, data_dir=Path(data_dir), topics=topics, sweep_every=0.05))
    await worker.start()
    await asyncio.Event().wait()  # until SIGKILLed or stopped by the test


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
