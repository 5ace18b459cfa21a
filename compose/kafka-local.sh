#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for development and tests.
#
#   compose/kafka-local.sh start      # fetch (first run only), format (first run only), start, wait;
#                                     # prints the bootstrap address (127.0.0.1:PORT) as the LAST stdout line
#   compose/kafka-local.sh stop       # SIGTERM, wait, SIGKILL after a deadline
#   compose/kafka-local.sh restart    # stop + start on the SAME ports and data (broker-restart tests)
#   compose/kafka-local.sh status     # "running ..." (exit 0) or "not running" (exit 3)
#   compose/kafka-local.sh bootstrap  # prints the address if running (exit 3 otherwise)
#   compose/kafka-local.sh reset      # stop and delete the data (topics, offsets); keeps the jar cache
#   compose/kafka-local.sh fetch      # only populate the jar cache
#   compose/kafka-local.sh logs [N]   # tail the broker log
#
# A three-node cluster (compose/kafka-cluster.sh does the work; state in <repo>/.kafka-cluster unless
# HANDOFF_KAFKA_DIR says otherwise, so it runs beside the single broker):
#   compose/kafka-local.sh start --brokers 3   # prints 127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3 as the LAST line
#   compose/kafka-local.sh stop N | start N | restart N | kill N   # one node (kill: SIGKILL)
#   compose/kafka-local.sh --brokers 3 status|bootstrap|stop|reset  # the whole cluster
#
# Environment:
#   HANDOFF_KAFKA_VERSION   Kafka version from Maven Central (default 4.1.2)
#   HANDOFF_KAFKA_CACHE     jar cache root (default ~/.cache/handoff); jars in <root>/kafka-<ver>/lib
#   HANDOFF_KAFKA_DIR       state dir (default <repo>/.kafka): config, data, pid, logs, bootstrap file
#   HANDOFF_KAFKA_PORT      client (PLAINTEXT) port; default: the port of the last run if free, else a free one
#   HANDOFF_KAFKA_CONTROLLER_PORT   controller port; same rule
#   HANDOFF_KAFKA_HEAP      max heap (default 512m)
#   HANDOFF_KAFKA_START_TIMEOUT / HANDOFF_KAFKA_STOP_TIMEOUT  seconds (default 90 / 30)
#   HANDOFF_KAFKA_PROPS     extra server.properties lines (newline or space separated key=value), appended last
#
# Only the address goes to stdout; every message goes to stderr.
# Note: auto.create.topics.enable=true (Kafka's default) — a produce/metadata request for an unknown topic
# creates it with num.partitions=1. Create topics explicitly when the partition count matters.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"

# A cluster is kafka-cluster.sh's: asked for (--brokers N > 1), a node named (stop 2, kill 2), or a state dir that holds one.
cluster_args=() cluster="" brokers=1 want_brokers=""
for arg in "$@"; do
  if [[ -n "$want_brokers" ]]; then want_brokers=""; brokers="$arg"; continue; fi
  [[ "$arg" == --brokers ]] && { want_brokers=1; continue; }
  cluster_args+=("$arg")
done
[[ "$brokers" =~ ^[0-9]+$ && "$brokers" -ge 1 ]] || { echo "kafka-local: --brokers needs a number" >&2; exit 2; }
((brokers > 1)) && cluster=1
case "${cluster_args[0]:-}" in
  kill | pid | port) cluster=1 ;;
  start | stop | restart) [[ "${cluster_args[1]:-}" =~ ^[0-9]+$ ]] && cluster=1 ;;
esac
[[ -n "${HANDOFF_KAFKA_DIR:-}" && -f "$HANDOFF_KAFKA_DIR/brokers" ]] && cluster=1
if [[ -n "$cluster" ]]; then
  [[ "${cluster_args[0]:-}" == start && "${#cluster_args[@]}" -eq 1 ]] && cluster_args+=(--brokers "$((brokers > 1 ? brokers : 3))")
  exec "$SCRIPT_DIR/kafka-cluster.sh" "${cluster_args[@]}"
fi
set -- "${cluster_args[@]}"

KAFKA_VERSION="${HANDOFF_KAFKA_VERSION:-4.1.2}"
CACHE_ROOT="${HANDOFF_KAFKA_CACHE:-${HOME:-/tmp}/.cache/handoff}"
CACHE_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIB_DIR="$CACHE_DIR/lib"
STATE_DIR="${HANDOFF_KAFKA_DIR:-$REPO_DIR/.kafka}"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/kafka.pid"
ADDR_FILE="$STATE_DIR/bootstrap"
PORTS_FILE="$STATE_DIR/ports"
CONF="$STATE_DIR/server.properties"
LOG4J_CONF="$STATE_DIR/log4j2.properties"
SERVER_LOG="$LOG_DIR/server.log"
CONSOLE_LOG="$LOG_DIR/console.out"
HEAP="${HANDOFF_KAFKA_HEAP:-512m}"
START_TIMEOUT="${HANDOFF_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${HANDOFF_KAFKA_STOP_TIMEOUT:-30}"
HOST=127.0.0.1
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

log() { printf 'kafka-local: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need Java 17+; install e.g. openjdk-17-jre-headless or set JAVA_HOME)"
  local v
  v="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [[ -n "$v" && "$v" -ge 17 ]] || die "Kafka 4 needs Java 17+, found: $("$JAVA" -version 2>&1 | head -1)"
}

# ---------------------------------------------------------------- jar cache
fetch() {
  [[ -f "$CACHE_DIR/.complete" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found: needed once to fetch Kafka $KAFKA_VERSION from Maven Central into $CACHE_DIR (install maven)"
  [[ -f "$POM" ]] || die "missing $POM"
  mkdir -p "$CACHE_ROOT"
  local tmp t0
  tmp="$(mktemp -d "$CACHE_ROOT/.kafka-$KAFKA_VERSION.XXXXXX")"
  t0=$SECONDS
  log "fetching Kafka $KAFKA_VERSION + runtime deps from Maven Central into $CACHE_DIR (first run only) ..."
  if ! mvn -q -B -f "$POM" -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1; then
    tail -n 40 "$tmp/mvn.log" >&2 || true
    rm -rf "$tmp"
    die "maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
  fi
  ls "$tmp/lib"/kafka_2.13-"$KAFKA_VERSION".jar "$tmp/lib"/log4j-core-*.jar "$tmp/lib"/log4j-slf4j*-impl-*.jar \
     >/dev/null 2>&1 || { rm -rf "$tmp"; die "fetched classpath is incomplete (no kafka/log4j jars)"; }
  rm -f "$tmp/mvn.log"
  touch "$tmp/.complete"
  # Atomic publish: another concurrent fetch may have won; then keep theirs.
  if ! mv -T "$tmp" "$CACHE_DIR" 2>/dev/null; then
    rm -rf "$tmp"
    [[ -f "$CACHE_DIR/.complete" ]] || die "could not populate $CACHE_DIR (partial dir there? remove it)"
  fi
  log "fetched in $((SECONDS - t0))s ($(ls "$LIB_DIR" | wc -l) jars)"
}

# ---------------------------------------------------------------- process helpers
read_pid() { [[ -f "$PID_FILE" ]] && cat "$PID_FILE" 2>/dev/null || true; }

is_running() {  # our broker (matched by the state-dir marker on its command line) is alive
  local pid
  pid="$(read_pid)"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dhandoff.kafka.dir=$STATE_DIR " || return 1
}

port_free() {  # can we bind 127.0.0.1:$1 ?
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
  else
    ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
  fi
}

free_port() {  # a free ephemeral port, not equal to $1
  local p
  for _ in $(seq 1 50); do
    if command -v python3 >/dev/null 2>&1; then
      p="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    else
      p=$((20000 + RANDOM % 40000))
    fi
    [[ "$p" != "${1:-}" ]] && port_free "$p" && { echo "$p"; return 0; }
  done
  die "could not find a free port"
}

choose_ports() {
  local saved_port="" saved_cport=""
  if [[ -f "$PORTS_FILE" ]]; then read -r saved_port saved_cport <"$PORTS_FILE" || true; fi
  if [[ -n "${HANDOFF_KAFKA_PORT:-}" ]]; then
    PORT="$HANDOFF_KAFKA_PORT"
    port_free "$PORT" || die "HANDOFF_KAFKA_PORT=$PORT is in use"
  elif [[ -n "$saved_port" ]] && port_free "$saved_port"; then
    PORT="$saved_port"
  else
    [[ -n "$saved_port" ]] && log "port $saved_port of the last run is taken; choosing another"
    PORT="$(free_port)"
  fi
  if [[ -n "${HANDOFF_KAFKA_CONTROLLER_PORT:-}" ]]; then
    CPORT="$HANDOFF_KAFKA_CONTROLLER_PORT"
    port_free "$CPORT" || die "HANDOFF_KAFKA_CONTROLLER_PORT=$CPORT is in use"
  elif [[ -n "$saved_cport" && "$saved_cport" != "$PORT" ]] && port_free "$saved_cport"; then
    CPORT="$saved_cport"
  else
    CPORT="$(free_port "$PORT")"
  fi
  [[ "$PORT" != "$CPORT" ]] || die "client and controller port are both $PORT"
  echo "$PORT $CPORT" >"$PORTS_FILE"
}

write_config() {
  # Static voter set (controller.quorum.voters) rather than a formatted dynamic quorum: the controller
  # port may then change between runs without reformatting.
  cat >"$CONF" <<EOF
# generated by compose/kafka-local.sh — rewritten on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

# single node: replication factor 1 everywhere
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# fewer internal partitions than the default 50: faster first group/transaction use on a small box
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10

# tests: no 3s wait before the first rebalance of a new group
group.initial.rebalance.delay.ms=0
# Kafka default, stated: unknown topics are created on first produce/metadata request (num.partitions each)
auto.create.topics.enable=true
num.partitions=1

# small machine
num.network.threads=2
num.io.threads=4
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
EOF
  if [[ -n "${HANDOFF_KAFKA_PROPS:-}" ]]; then
    printf '\n# HANDOFF_KAFKA_PROPS\n' >>"$CONF"
    tr ' ' '\n' <<<"$HANDOFF_KAFKA_PROPS" | sed '/^$/d' >>"$CONF"
  fi

  cat >"$LOG4J_CONF" <<EOF
# generated by compose/kafka-local.sh — broker logs go to a file, never the terminal
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $SERVER_LOG
appender.file.filePattern = $LOG_DIR/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

java_cmd() {  # $1 = main class, rest = args
  local main="$1"; shift
  "$JAVA" -Xmx"$HEAP" -Xms64m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$LIB_DIR/*" "$main" "$@"
}

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local cid
  if command -v python3 >/dev/null 2>&1; then
    # A cluster id that starts with "-" would be read as an option by StorageTool: draw again.
    cid="$(python3 -c 'import base64,uuid
while True:
    c = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not c.startswith("-"):
        print(c)
        break')"
  else
    cid="$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
  fi
  log "formatting KRaft storage in $DATA_DIR (cluster id $cid)"
  mkdir -p "$DATA_DIR"
  if ! java_cmd kafka.tools.StorageTool format --cluster-id="$cid" -c "$CONF" >"$LOG_DIR/format.out" 2>&1; then
    cat "$LOG_DIR/format.out" >&2
    die "kafka-storage format failed"
  fi
}

tail_logs() {
  log "---- last lines of $SERVER_LOG ----"
  tail -n "${1:-40}" "$SERVER_LOG" >&2 2>/dev/null || true
  if [[ -s "$CONSOLE_LOG" ]]; then
    log "---- $CONSOLE_LOG ----"
    tail -n 20 "$CONSOLE_LOG" >&2 || true
  fi
}

# ---------------------------------------------------------------- commands
cmd_start() {
  if is_running; then
    local addr; addr="$(cat "$ADDR_FILE" 2>/dev/null || true)"
    if [[ -n "$addr" ]]; then
      log "already running (pid $(read_pid)) at $addr"
      echo "$addr"
      return 0
    fi
    die "a broker (pid $(read_pid)) runs for $STATE_DIR but has no bootstrap file; run '$0 restart'"
  fi
  rm -f "$PID_FILE" "$ADDR_FILE"
  need_java
  fetch
  mkdir -p "$STATE_DIR" "$LOG_DIR"
  choose_ports
  write_config
  format_storage

  [[ -f "$SERVER_LOG" ]] && mv -f "$SERVER_LOG" "$LOG_DIR/server.prev.log"
  : >"$CONSOLE_LOG"
  local t0=$SECONDS pid
  # setsid: own session, so a Ctrl-C in the calling terminal does not reach the broker.
  # The -Dhandoff.kafka.dir marker lets status/stop recognise our process (pid reuse safe).
  setsid "$JAVA" -Xmx"$HEAP" -Xms64m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
    -Dhandoff.kafka.dir="$STATE_DIR" \
    -cp "$LIB_DIR/*" kafka.Kafka "$CONF" </dev/null >>"$CONSOLE_LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  log "starting Kafka $KAFKA_VERSION (pid $pid) on $HOST:$PORT (controller $CPORT), state $STATE_DIR"

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail_logs
      rm -f "$PID_FILE"
      die "broker exited during startup (see $SERVER_LOG)"
    fi
    if grep -q "Kafka Server started" "$SERVER_LOG" 2>/dev/null && (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
      break
    fi
    if ((SECONDS >= deadline)); then
      tail_logs
      log "giving up after ${START_TIMEOUT}s; stopping pid $pid"
      stop_pid "$pid"
      die "broker did not become ready within ${START_TIMEOUT}s"
    fi
    sleep 0.3
  done
  echo "$HOST:$PORT" >"$ADDR_FILE"
  log "ready in $((SECONDS - t0))s"
  echo "$HOST:$PORT"
}

stop_pid() {
  local pid="$1" deadline
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "pid $pid still alive after ${STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
}

cmd_stop() {
  if is_running; then
    local pid; pid="$(read_pid)"
    log "stopping pid $pid ..."
    local t0=$SECONDS
    stop_pid "$pid"
    log "stopped in $((SECONDS - t0))s"
  else
    log "not running"
  fi
  rm -f "$PID_FILE" "$ADDR_FILE"
}

cmd_status() {
  if is_running; then
    echo "running: pid $(read_pid), bootstrap $(cat "$ADDR_FILE" 2>/dev/null || echo '(starting)'), Kafka $KAFKA_VERSION, state $STATE_DIR"
  else
    echo "not running (state $STATE_DIR)"
    return 3
  fi
}

cmd_bootstrap() {
  if is_running && [[ -s "$ADDR_FILE" ]]; then
    cat "$ADDR_FILE"
  else
    log "not running; use '$0 start'"
    return 3
  fi
}

cmd_restart() {  # same data; same ports unless they were taken meanwhile (saved in $PORTS_FILE)
  cmd_stop
  cmd_start
}

cmd_reset() {
  cmd_stop
  log "deleting $DATA_DIR"
  rm -rf "$DATA_DIR"
}

with_lock() {  # serialise start/stop/restart/reset for one state dir
  mkdir -p "$STATE_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$STATE_DIR/.lock"
    flock -w $((START_TIMEOUT + STOP_TIMEOUT + 600)) 9 || die "could not lock $STATE_DIR/.lock"
  fi
  "$@"
}

case "${1:-}" in
  start) with_lock cmd_start ;;
  stop) with_lock cmd_stop ;;
  restart) with_lock cmd_restart ;;
  status) cmd_status ;;
  bootstrap) cmd_bootstrap ;;
  reset) with_lock cmd_reset ;;
  fetch) need_java; fetch; log "cache: $LIB_DIR" ;;
  logs) tail -n "${2:-60}" "$SERVER_LOG" ;;
  *)
    echo "usage: $0 start|stop|restart|status|bootstrap|reset|fetch|logs [N]  (a cluster: start --brokers 3, stop|start|restart|kill N)" >&2
    exit 2
    ;;
esac
