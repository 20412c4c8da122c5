#!/usr/bin/env bash
# The local stack for `make demo`: NATS (JetStream), ClickHouse and Redis as
# private processes with all their data under .local/stack, then the four
# darklaunch services and the demo primary, secondary and shadow from bin/.
#
#   scripts/stack.sh up      start what is not running (reruns are safe)
#   scripts/stack.sh down    stop everything (data stays in .local/stack)
#   scripts/stack.sh status  what runs, where
#   scripts/stack.sh clean   down, then delete .local/stack
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STACK=$ROOT/.local/stack
RUN=$STACK/run
LOGS=$STACK/logs
mkdir -p "$RUN" "$LOGS"

: "${NATS_PORT:=4222}" "${CLICKHOUSE_PORT:=9000}" "${CLICKHOUSE_HTTP_PORT:=8123}" "${REDIS_PORT:=6379}"
: "${MIRROR_PORT:=8080}" "${MIRROR_ADMIN_PORT:=8081}" "${RUNNER_ADMIN_PORT:=8082}" "${COMPARATOR_ADMIN_PORT:=8083}"
: "${REPORTER_PORT:=8090}" "${REPORTER_ADMIN_PORT:=8091}" "${PRIMARY_PORT:=9101}" "${SHADOW_PORT:=9102}" "${SECONDARY_PORT:=9103}"

export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export CLICKHOUSE_ADDR="127.0.0.1:$CLICKHOUSE_PORT"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export LOG_FORMAT=json
# Each of the three streams reserves NATS_STREAM_MAX_BYTES of JetStream
# storage (10 GiB by default: 30 GiB, more than a laptop may have free);
# the demo keeps 1 GiB per stream.
export NATS_STREAM_MAX_BYTES=1073741824

clickhouse_bin() { command -v clickhouse-server || echo /usr/sbin/clickhouse-server; }

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# start NAME CMD...: start a process in the background unless it runs.
start() {
  local name=$1; shift
  if running "$name"; then echo "  $name: already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  nohup "$@" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  echo "  $name: started (pid $!, log .local/stack/logs/$name.log)"
}

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$name did not open port $port; see .local/stack/logs/$name.log" >&2
  tail -n 20 "$LOGS/$name.log" >&2 || true
  exit 1
}

clickhouse_config() {
  local d=$STACK/clickhouse
  mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/format_schemas"
  cat >"$d/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
  cat >"$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <tcp_port>$CLICKHOUSE_PORT</tcp_port>
  <http_port>$CLICKHOUSE_HTTP_PORT</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$d/data/</path>
  <tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path>
  <format_schema_path>$d/format_schemas/</format_schema_path>
  <users_config>$d/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
</yandex>
XML
}

up_infra() {
  echo "stack: servers"
  start nats "$ROOT/.local/bin/nats-server" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$STACK/nats"
  clickhouse_config
  start clickhouse "$(clickhouse_bin)" --config-file="$STACK/clickhouse/config.xml"
  start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$STACK"
  wait_port nats "$NATS_PORT"; wait_port clickhouse "$CLICKHOUSE_PORT"; wait_port redis "$REDIS_PORT"
}

# api_token creates the stack's admin API token once (.local/stack/api-token,
# mode 600) and gives the reporter a tokens file holding only its sha256.
api_token() {
  local token=$STACK/api-token tokens=$STACK/reporter-tokens
  if [ ! -s "$token" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token")
  fi
  chmod 600 "$token"
  (umask 077; printf '# the local stack'"'"'s admin token (.local/stack/api-token)\nstack admin sha256:%s\n' \
    "$(tr -d '\n' <"$token" | sha256sum | cut -d' ' -f1)" >"$tokens")
}

# seal_keys creates the key file mirror and runner share (sealed header
# values in envelopes, replay proofs), once: later runs reuse it, so what
# the streams hold stays readable.
SEAL_KEYS=$STACK/seal-keys
seal_keys() {
  if [ ! -s "$SEAL_KEYS" ]; then
    (umask 077; printf '# darklaunch seal keys (docs/envelope.md): <key id> <base64 of 32 bytes> [current]\nk1 %s current\n' \
      "$(head -c 32 /dev/urandom | base64 -w0)" >"$SEAL_KEYS")
    echo "  seal key file: .local/stack/seal-keys (created)"
  fi
}

up_apps() {
  echo "stack: demo apps and darklaunch services"
  api_token
  seal_keys
  DEMO_ADDR=127.0.0.1:$PRIMARY_PORT DEMO_VARIANT=primary start demo-primary "$ROOT/bin/demo-app"
  DEMO_ADDR=127.0.0.1:$SHADOW_PORT DEMO_VARIANT=shadow start demo-shadow "$ROOT/bin/demo-app"
  DEMO_ADDR=127.0.0.1:$SECONDARY_PORT DEMO_VARIANT=secondary start demo-secondary "$ROOT/bin/demo-app"
  MIRROR_ADDR=127.0.0.1:$MIRROR_PORT MIRROR_ADMIN_ADDR=127.0.0.1:$MIRROR_ADMIN_PORT \
    MIRROR_PRIMARY_URL=http://127.0.0.1:$PRIMARY_PORT MIRROR_SEAL_KEY_FILE=$SEAL_KEYS start mirror "$ROOT/bin/mirror"
  RUNNER_ADMIN_ADDR=127.0.0.1:$RUNNER_ADMIN_PORT RUNNER_SEAL_KEY_FILE=$SEAL_KEYS start shadow-runner "$ROOT/bin/shadow-runner"
  COMPARATOR_ADMIN_ADDR=127.0.0.1:$COMPARATOR_ADMIN_PORT start comparator "$ROOT/bin/comparator"
  REPORTER_ADDR=127.0.0.1:$REPORTER_PORT REPORTER_ADMIN_ADDR=127.0.0.1:$REPORTER_ADMIN_PORT \
    REPORTER_TOKENS_FILE=$STACK/reporter-tokens start reporter "$ROOT/bin/reporter"
  wait_port demo-primary "$PRIMARY_PORT"; wait_port demo-shadow "$SHADOW_PORT"; wait_port demo-secondary "$SECONDARY_PORT"
  wait_port mirror "$MIRROR_PORT"; wait_port reporter "$REPORTER_PORT"
  wait_port shadow-runner "$RUNNER_ADMIN_PORT"; wait_port comparator "$COMPARATOR_ADMIN_PORT"
  echo "stack: the API needs a token; an admin one is in .local/stack/api-token (mode 600):"
  echo "  export DARKLAUNCH_TOKEN=\$(cat .local/stack/api-token)"
  echo "  bin/darkctl list    # or: curl -H \"Authorization: Bearer \$DARKLAUNCH_TOKEN\" 127.0.0.1:$REPORTER_PORT/v1/launches"
  echo "  the dashboard (http://127.0.0.1:$REPORTER_PORT/) asks for it once per browser session"
}

down() {
  echo "stack: stopping"
  for name in mirror shadow-runner comparator reporter demo-primary demo-shadow demo-secondary redis clickhouse nats; do
    if running "$name"; then
      kill -TERM "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$name" || break; sleep 0.2; done
      running "$name" && kill -KILL "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      echo "  $name: stopped"
    fi
    rm -f "$RUN/$name.pid"
  done
}

status() {
  for name in nats clickhouse redis demo-primary demo-shadow demo-secondary mirror shadow-runner comparator reporter; do
    if running "$name"; then echo "  $name: running (pid $(cat "$RUN/$name.pid"))"; else echo "  $name: stopped"; fi
  done
}

case "${1:-}" in
  up) up_infra; up_apps ;;
  infra) up_infra ;;
  down) down ;;
  status) status ;;
  clean) down; rm -rf "$STACK" ;;
  *) echo "usage: $0 up|infra|down|status|clean" >&2; exit 2 ;;
esac
