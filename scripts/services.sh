#!/usr/bin/env bash
# Makes RabbitMQ (with the management API) and PostgreSQL reachable, then exports where they are:
#   INTEGRATION_RABBITMQ_URI, INTEGRATION_RABBITMQ_MANAGEMENT_URI, INTEGRATION_POSTGRES
# Order of preference: services already named by those variables; services already listening on the default
# local ports; a Docker engine (docker compose); the Debian packages, installed once and started here.
# Idempotent and fast when everything already runs. Source it: `. scripts/services.sh`.

_svc_log() { printf '[services] %s\n' "$*" >&2; }
_svc_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
_svc_as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

_svc_apt_install() {
  if [ -z "${_SVC_APT_UPDATED:-}" ]; then
    _svc_log "apt-get update"
    _svc_as_root apt-get update -qq >/dev/null
    _SVC_APT_UPDATED=1
  fi
  _svc_log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive _svc_as_root apt-get install -y -qq "$@" >/dev/null
}

_svc_docker() {
  command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1
}

_svc_wait_port() { # port seconds name
  local i
  for ((i = 0; i < $2 * 4; i++)); do _svc_port_open "$1" && return 0; sleep 0.25; done
  _svc_log "ERROR: $3 did not open port $1 within $2 s"; return 1
}

_svc_rabbitmq_local() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    _svc_apt_install rabbitmq-server
  fi
  if ! _svc_port_open 5672; then
    _svc_log "starting rabbitmq-server"
    # Enable the management plugin before boot (offline), so no restart is needed.
    _svc_as_root rabbitmq-plugins enable --offline rabbitmq_management >/dev/null 2>&1 || true
    # The Debian package may have started it through systemd/init already; start detached otherwise.
    _svc_as_root rabbitmqctl -q await_startup --timeout 2 >/dev/null 2>&1 || _svc_as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    # `-detached` returns before the node registers with epmd, and await_startup fails at once for a node it cannot
    # see yet; poll. Booting a broker with many virtual hosts (left by killed test runs) takes a while.
    local i
    for ((i = 0; i < 90; i++)); do
      _svc_as_root rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1 && break
      sleep 2
    done
    _svc_as_root rabbitmqctl -q await_startup --timeout 10 >/dev/null || { _svc_log "ERROR: RabbitMQ did not start"; return 1; }
  fi
  if ! _svc_port_open 15672; then
    _svc_log "enabling rabbitmq_management"
    _svc_as_root rabbitmq-plugins enable rabbitmq_management >/dev/null
    _svc_wait_port 15672 60 "RabbitMQ management" || return 1
  fi
  _svc_wait_port 5672 60 RabbitMQ
}

_svc_postgres_local() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    _svc_apt_install postgresql
  fi
  if ! _svc_port_open 5432; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    _svc_log "starting PostgreSQL $version"
    _svc_as_root pg_ctlcluster "$version" main start
    _svc_wait_port 5432 60 PostgreSQL || return 1
  fi
  # A password for the superuser so TCP clients (Npgsql) can log in; set once.
  if ! PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    _svc_log "setting the local postgres password"
    (cd / && _svc_as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"") >/dev/null
  fi
}

integration_services() {
  if [ -n "${INTEGRATION_RABBITMQ_URI:-}" ] && [ -n "${INTEGRATION_POSTGRES:-}" ]; then
    _svc_log "using services from INTEGRATION_RABBITMQ_URI and INTEGRATION_POSTGRES"
    return 0
  fi

  if ! { _svc_port_open 5672 && _svc_port_open 15672 && _svc_port_open 5432; } && _svc_docker; then
    _svc_log "starting rabbitmq and postgres with docker compose"
    local compose_file
    compose_file="$(dirname "${BASH_SOURCE[0]}")/../docker-compose.yml"
    if docker compose version >/dev/null 2>&1; then
      docker compose -f "$compose_file" up -d --wait rabbitmq postgres >&2 || return 1
    else
      docker-compose -f "$compose_file" up -d rabbitmq postgres >&2 || return 1
    fi
    _svc_wait_port 5672 120 RabbitMQ && _svc_wait_port 15672 120 "RabbitMQ management" && _svc_wait_port 5432 120 PostgreSQL || return 1
  else
    _svc_rabbitmq_local || return 1
    _svc_postgres_local || return 1
  fi

  export INTEGRATION_RABBITMQ_URI="${INTEGRATION_RABBITMQ_URI:-amqp://guest:guest@localhost:5672/}"
  export INTEGRATION_RABBITMQ_MANAGEMENT_URI="${INTEGRATION_RABBITMQ_MANAGEMENT_URI:-http://localhost:15672/}"
  export INTEGRATION_POSTGRES="${INTEGRATION_POSTGRES:-Host=localhost;Port=5432;Username=postgres;Password=postgres;Database=postgres}"
  _svc_log "RabbitMQ amqp://localhost:5672 (management http://localhost:15672), PostgreSQL localhost:5432"
}

# Headless Chromium for the dashboard's browser specs (Debian's package, driven by Playwright). Installs it once when
# missing, then checks it starts; exports PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH. Fails loudly when it cannot start.
integration_browser() {
  local path="${PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH:-}"
  if [ -z "$path" ]; then
    path=$(command -v chromium || command -v chromium-browser || true)
  fi
  if [ -z "$path" ] || [ ! -x "$path" ]; then
    _svc_apt_install chromium || { _svc_log "ERROR: could not install chromium (apt-get install chromium)"; return 1; }
    path=$(command -v chromium)
  fi
  if ! timeout 60 "$path" --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1; then
    _svc_log "ERROR: $path does not start headless"; return 1
  fi
  export PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH="$path"
  _svc_log "Chromium $path"
}

# A local 3-node RabbitMQ cluster for the cluster specs (quorum queues, node failure), beside the single node the other
# specs use: nodes rabbit-c1..c3@localhost, AMQP ports 5681-5683, management 15681-15683, distribution ports
# 25681-25683, data and logs under $INTEGRATION_CLUSTER_DIR (default /tmp/integration-rabbit-cluster), the rabbitmq
# user's Erlang cookie (the three share it). It never touches the node on 5672. Exports INTEGRATION_RABBITMQ_CLUSTER_NODES
# (localhost:5681,localhost:5682,localhost:5683) and INTEGRATION_RABBITMQ_CLUSTER_MANAGEMENT_URI.
#   integration_cluster_start      start (or reuse) the three nodes and join them into one cluster
#   integration_cluster_stop       stop the three nodes (data kept; integration_cluster_stop --purge deletes it)
#   integration_cluster_kill N     SIGKILL node N (1-3), the way a machine dies
#   integration_cluster_restart N  start node N again after integration_cluster_kill, rejoining the cluster
_SVC_CLUSTER_DIR="${INTEGRATION_CLUSTER_DIR:-/tmp/integration-rabbit-cluster}"

_svc_cluster_env() { # node number -> the environment rabbitmq-server reads
  local n=$1 base="$_SVC_CLUSTER_DIR/c$1"
  printf '%s\n' \
    "RABBITMQ_NODENAME=rabbit-c$n@localhost" \
    "RABBITMQ_NODE_PORT=$((5680 + n))" \
    "RABBITMQ_DIST_PORT=$((25680 + n))" \
    "RABBITMQ_MNESIA_BASE=$base/mnesia" \
    "RABBITMQ_LOG_BASE=$base/log" \
    "RABBITMQ_PID_FILE=$base/pid" \
    "RABBITMQ_CONFIG_FILE=$base/rabbitmq.conf" \
    "RABBITMQ_ENABLED_PLUGINS_FILE=$base/enabled_plugins"
}

_svc_cluster_ctl() { # node number, rabbitmqctl arguments...
  local n=$1; shift
  rabbitmqctl -q -n "rabbit-c$n@localhost" "$@"
}

_svc_cluster_boot() { # node number
  local n=$1 base="$_SVC_CLUSTER_DIR/c$1"
  mkdir -p "$base/mnesia" "$base/log"
  printf 'listeners.tcp.default = %s\nmanagement.tcp.port = %s\nloopback_users = none\n' $((5680 + n)) $((15680 + n)) > "$base/rabbitmq.conf"
  printf '[rabbitmq_management].\n' > "$base/enabled_plugins"
  if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$base" 2>/dev/null || true; fi
  if _svc_port_open $((5680 + n)); then return 0; fi
  _svc_log "starting rabbit-c$n@localhost (amqp $((5680 + n)), management $((15680 + n)))"
  (cd / && env $(_svc_cluster_env "$n") rabbitmq-server -detached >/dev/null 2>&1) || true
  local i
  for ((i = 0; i < 120; i++)); do
    _svc_port_open $((5680 + n)) && _svc_cluster_ctl "$n" await_startup --timeout 5 >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  _svc_log "ERROR: rabbit-c$n@localhost did not start (logs: $base/log)"; return 1
}

integration_cluster_start() {
  command -v rabbitmq-server >/dev/null 2>&1 || _svc_apt_install rabbitmq-server || return 1
  local n
  for n in 1 2 3; do _svc_cluster_boot "$n" || return 1; done
  for n in 2 3; do
    if ! _svc_cluster_ctl "$n" cluster_status 2>/dev/null | grep -q "rabbit-c1@localhost"; then
      _svc_log "joining rabbit-c$n@localhost to rabbit-c1@localhost"
      _svc_cluster_ctl "$n" stop_app && _svc_cluster_ctl "$n" join_cluster rabbit-c1@localhost && _svc_cluster_ctl "$n" start_app || return 1
    fi
  done
  for n in 1 2 3; do _svc_wait_port $((15680 + n)) 60 "rabbit-c$n management" || return 1; done
  export INTEGRATION_RABBITMQ_CLUSTER_NODES="localhost:5681,localhost:5682,localhost:5683"
  export INTEGRATION_RABBITMQ_CLUSTER_MANAGEMENT_URI="http://localhost:15681/"
  _svc_log "RabbitMQ cluster rabbit-c1..c3@localhost on $INTEGRATION_RABBITMQ_CLUSTER_NODES"
}

integration_cluster_kill() { # node number
  local pid
  pid=$(cat "$_SVC_CLUSTER_DIR/c$1/pid" 2>/dev/null) || { _svc_log "rabbit-c$1@localhost: no pid file"; return 1; }
  _svc_log "SIGKILL rabbit-c$1@localhost (pid $pid)"
  kill -9 "$pid"
}

integration_cluster_restart() { _svc_cluster_boot "$1"; }

integration_cluster_stop() {
  local n
  for n in 1 2 3; do
    if _svc_port_open $((5680 + n)); then
      _svc_log "stopping rabbit-c$n@localhost"
      _svc_cluster_ctl "$n" stop >/dev/null 2>&1 || true
    fi
  done
  if [ "${1:-}" = "--purge" ]; then rm -rf "$_SVC_CLUSTER_DIR"; fi
  unset INTEGRATION_RABBITMQ_CLUSTER_NODES INTEGRATION_RABBITMQ_CLUSTER_MANAGEMENT_URI
}
