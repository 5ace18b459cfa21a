"""A second local broker whose client listener is SASL_SSL with SCRAM-SHA-256, for the Kafka security tests.

Certificates are made at test time with openssl: a CA, and a broker certificate for 127.0.0.1 that
the CA signs (a PKCS12 keystore for the broker; the clients trust the CA's PEM). The SCRAM user is
added when the storage is formatted (``StorageTool format --add-scram``). The broker keeps a
PLAINTEXT listener too, for its own inter-broker traffic only: the tests connect to the SASL_SSL one.
It runs the jars that compose/kafka-local.sh cached, in its own state dir, and is stopped at the end.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = os.environ.get("HANDOFF_KAFKA_VERSION", "4.1.2")
CACHE = Path(os.environ.get("HANDOFF_KAFKA_CACHE") or Path.home() / ".cache" / "handoff")
USER = "handoff-app"
MECHANISM = "SCRAM-SHA-256"


@dataclass(frozen=True)
class SecureBroker:
    """Where the SASL_SSL listener is, and what a client needs to pass it."""

    bootstrap: str
    cafile: Path
    username: str
    password: str
    state: Path

    def env(self, *, password: str | None = None) -> dict[str, str]:
        """The HANDOFF_KAFKA_* settings of a client of this broker (another password: a wrong one)."""
        return {
            "HANDOFF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "HANDOFF_KAFKA_SASL_MECHANISM": MECHANISM,
            "HANDOFF_KAFKA_SASL_USERNAME": self.username,
            "HANDOFF_KAFKA_SASL_PASSWORD": self.password if password is None else password,
            "HANDOFF_KAFKA_SSL_CAFILE": str(self.cafile),
        }

    def log(self) -> str:
        path = self.state / "logs" / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no broker log)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr[-2000:]}"


def make_certificates(where: Path, store_password: str) -> tuple[Path, Path]:
    """A CA and a broker certificate for 127.0.0.1 signed by it: (the CA's PEM, the broker's PKCS12 keystore)."""
    where.mkdir(parents=True, exist_ok=True)
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=handoff-test-ca",
         "-keyout", "ca.key", "-out", "ca.pem", cwd=where)  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", "broker.key", "-out", "broker.csr", cwd=where)  # fmt: skip
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run("openssl", "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "san.ext", "-out", "broker.pem", cwd=where)  # fmt: skip
    _run("openssl", "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
         "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{store_password}", cwd=where)  # fmt: skip
    return where / "ca.pem", where / "broker.p12"


def _config(state: Path, port: int, sasl_port: int, cport: int, keystore: Path, store_password: str) -> str:
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms={MECHANISM}
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={store_password}
ssl.key.password={store_password}
ssl.client.auth=none
log.dirs={state / "data"}
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
"""


LOG4J = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
"""


@contextmanager
def secure_broker(state: Path, *, timeout: float = 120.0) -> Iterator[SecureBroker]:
    """Start the secured broker in `state`; stop it when done. AssertionError if it does not come up."""
    lib = CACHE / f"kafka-{KAFKA_VERSION}" / "lib"
    assert (lib / f"kafka_2.13-{KAFKA_VERSION}.jar").exists(), f"no Kafka jars in {lib} (compose/kafka-local.sh fetch)"
    store_password = uuid.uuid4().hex
    password = uuid.uuid4().hex
    cafile, keystore = make_certificates(state / "tls", store_password)
    port, sasl_port, cport = _free_port(), _free_port(), _free_port()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    conf = state / "server.properties"
    conf.write_text(_config(state, port, sasl_port, cport, keystore, store_password))
    log4j = state / "log4j2.properties"
    log4j.write_text(LOG4J.format(log=state / "logs" / "server.log"))
    java = ["java", "-Xmx384m", "-Xms64m", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]
    cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=").replace("-", "A")
    scram = f"{MECHANISM}=[name={USER},password={password}]"
    _run(*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c", str(conf),
         "--add-scram", scram, cwd=state)  # fmt: skip
    with open(state / "logs" / "console.out", "ab") as console:
        proc = subprocess.Popen(
            [*java, "kafka.Kafka", str(conf)], stdin=subprocess.DEVNULL, stdout=console, stderr=console,
            start_new_session=True,
        )  # fmt: skip
    broker = SecureBroker(f"127.0.0.1:{sasl_port}", cafile, USER, password, state)
    try:
        _until_started(proc, broker, sasl_port, timeout)
        yield broker
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _until_started(proc: subprocess.Popen[bytes], broker: SecureBroker, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    log = broker.state / "logs" / "server.log"
    while True:
        assert proc.poll() is None, f"the secured broker exited at start-up:\n{broker.log()}"
        started = log.exists() and "Kafka Server started" in log.read_text(errors="replace")
        if started:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
        assert time.monotonic() < deadline, f"the secured broker did not start in {timeout}s:\n{broker.log()}"
        time.sleep(0.2)  # polling a condition, with the deadline above
