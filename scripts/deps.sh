#!/usr/bin/env bash
# Installs what darklaunch's tests and demo need, skipping what is present:
# clickhouse-server, clickhouse-client, redis-server, hey, wrk and nginx-light
# (make bench), and chromium (the dashboard's browser test) from Debian
# packages, and
# nats-server (built with `go install` into .local/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION=${NATS_SERVER_VERSION:-v2.15.2}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have clickhouse-server || missing+=(clickhouse-server)
have clickhouse-client || missing+=(clickhouse-client)
have redis-server || missing+=(redis-server)
# hey: the out-of-process load generator of `make bench` (polling figures).
have hey || missing+=(hey)
# wrk: the load generator of the tap's table (make bench); nginx-light: the
# proxies the tap is compared with, run from a generated config in a temp dir
# (the package's own service is not started here).
have wrk || missing+=(wrk)
have nginx || missing+=(nginx-light)
have chromium || have chromium-browser || missing+=(chromium)
# zookeeper: the ClickHouse cluster test's coordinator (pkg/analytics, run with java).
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]} from Debian packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts nothing by itself here (no init system), and its
# own service must not hold the ports the demo stack uses.

if ! have go; then
  echo "deps: Go 1.26 or newer is required (https://go.dev/dl/); it is not in PATH" >&2
  exit 1
fi

if [ ! -x .local/bin/nats-server ]; then
  echo "deps: building nats-server ${NATS_SERVER_VERSION} into .local/bin"
  mkdir -p .local/bin
  GOBIN="$PWD/.local/bin" GOWORK=off go install "github.com/nats-io/nats-server/v2@${NATS_SERVER_VERSION}"
fi
echo "deps: ok (clickhouse-server, redis-server, hey, wrk, nginx, chromium, .local/bin/nats-server)"
