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
