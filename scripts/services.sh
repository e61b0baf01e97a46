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


# ---------------------------------------------------------------------------------------------------------------------
# TLS end to end (issue #19). A throw-away CA with server and client certificates (openssl), a RabbitMQ node of its own
# with only a TLS listener that verifies peers (verify_peer, fail_if_no_peer_cert), and a PostgreSQL 15 instance of its
# own with ssl=on that accepts TLS connections only (hostssl). Neither touches the shared broker (5672) or database
# (5432): own node name, ports, data, log and config. Exports, for the TLS specs:
#   INTEGRATION_TLS_DIR                     the work directory (certificates, data, logs)
#   INTEGRATION_TLS_CA                      the CA certificate (PEM) that signed the servers' and the client's certificates
#   INTEGRATION_TLS_RABBITMQ_URI            amqps://guest:guest@localhost:<port>/
#   INTEGRATION_TLS_RABBITMQ_MANAGEMENT_URI http://localhost:<port>/ (plain HTTP, loopback only)
#   INTEGRATION_TLS_CLIENT_CERTIFICATE      client certificate signed by the CA (PKCS#12), passphrase in
#   INTEGRATION_TLS_CLIENT_PASSPHRASE
#   INTEGRATION_TLS_ROGUE_CLIENT_CERTIFICATE a client certificate from another CA (PKCS#12, same passphrase): must be refused
#   INTEGRATION_TLS_POSTGRES                a connection string with SSL Mode=VerifyFull and the CA as root certificate
# Ports: INTEGRATION_TLS_AMQPS_PORT (5691), INTEGRATION_TLS_MANAGEMENT_PORT (15691), INTEGRATION_TLS_DIST_PORT (25691),
# INTEGRATION_TLS_POSTGRES_PORT (5491). Idempotent: a node already listening is reused. Stop with integration_tls_stop.

_tls_dir() { printf '%s' "${INTEGRATION_TLS_DIR:-${TMPDIR:-/tmp}/integration-tls}"; }

_tls_certificates() { # dir
  local d="$1" pass="${INTEGRATION_TLS_CLIENT_PASSPHRASE:-integration-tls}"
  [ -f "$d/certs/client.pfx" ] && [ -f "$d/certs/rogue-client.pfx" ] && return 0
  mkdir -p "$d/certs" && chmod 755 "$d" "$d/certs"
  (
    set -e
    cd "$d/certs"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    for ca in ca rogue-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=integration-test-$ca" -keyout "$ca.key" -out "$ca.pem" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null
    for client in client:ca rogue-client:rogue-ca; do
      name=${client%%:*}; ca=${client#*:}
      openssl req -newkey rsa:2048 -nodes -subj "/CN=integration-$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
      openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial -days 2 -extfile client.ext -out "$name.pem" 2>/dev/null
      openssl pkcs12 -export -in "$name.pem" -inkey "$name.key" -passout "pass:$pass" -out "$name.pfx"
    done
    chmod 644 ./*.pem ./*.pfx
    chmod 600 ./*.key
  ) || { _svc_log "ERROR: openssl could not make the test certificates in $d/certs"; return 1; }
}

_tls_rabbitmq() { # dir
  local d="$1" amqps="${INTEGRATION_TLS_AMQPS_PORT:-5691}" mgmt="${INTEGRATION_TLS_MANAGEMENT_PORT:-15691}"
  local node="rabbit-tls@localhost"
  _svc_port_open "$amqps" && _svc_port_open "$mgmt" && return 0
  command -v openssl >/dev/null 2>&1 || _svc_apt_install openssl
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || _svc_apt_install rabbitmq-server
  mkdir -p "$d/rabbitmq/home" "$d/rabbitmq/mnesia" "$d/rabbitmq/log"
  [ -f "$d/rabbitmq/home/.erlang.cookie" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$d/rabbitmq/home/.erlang.cookie"; chmod 400 "$d/rabbitmq/home/.erlang.cookie"; }
  echo '[rabbitmq_management].' > "$d/rabbitmq/enabled_plugins"
  : > "$d/rabbitmq/rabbitmq-env.conf"
  cat > "$d/rabbitmq/rabbitmq.conf" <<CONF
listeners.tcp = none
listeners.ssl.default = $amqps
ssl_options.cacertfile = $d/certs/ca.pem
ssl_options.certfile = $d/certs/server.pem
ssl_options.keyfile = $d/certs/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
ssl_options.versions.1 = tlsv1.2
ssl_options.versions.2 = tlsv1.3
management.tcp.port = $mgmt
management.tcp.ip = 127.0.0.1
CONF
  _svc_log "starting RabbitMQ node $node (AMQPS $amqps, verify_peer, fail_if_no_peer_cert; management http://localhost:$mgmt)"
  (
    export HOME="$d/rabbitmq/home" RABBITMQ_NODENAME="$node" RABBITMQ_DIST_PORT="${INTEGRATION_TLS_DIST_PORT:-25691}" \
      RABBITMQ_MNESIA_BASE="$d/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$d/rabbitmq/log" RABBITMQ_CONFIG_FILE="$d/rabbitmq/rabbitmq" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$d/rabbitmq/enabled_plugins" RABBITMQ_CONF_ENV_FILE="$d/rabbitmq/rabbitmq-env.conf" \
      RABBITMQ_PID_FILE="$d/rabbitmq/rabbit.pid" RABBITMQ_ADVANCED_CONFIG_FILE="$d/rabbitmq/advanced.config"
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server > "$d/rabbitmq/log/startup.log" 2>&1 < /dev/null &
  )
  _svc_wait_port "$amqps" 120 "RabbitMQ TLS node" && _svc_wait_port "$mgmt" 60 "RabbitMQ TLS node management" || {
    tail -n 30 "$d/rabbitmq/log/startup.log" >&2; return 1; }
}

_tls_postgres() { # dir
  local d="$1" port="${INTEGRATION_TLS_POSTGRES_PORT:-5491}" bin=/usr/lib/postgresql/15/bin
  _svc_port_open "$port" && return 0
  [ -x "$bin/initdb" ] || _svc_apt_install postgresql-15
  local run=() owner
  owner=$(id -un)
  if [ "$(id -u)" = 0 ]; then owner=postgres; run=(su postgres -s /bin/sh -c); else run=(sh -c); fi
  mkdir -p "$d/postgres"
  install -m 644 "$d/certs/server.pem" "$d/postgres/server.pem"
  install -m 644 "$d/certs/ca.pem" "$d/postgres/ca.pem"
  install -m 600 "$d/certs/server.key" "$d/postgres/server.key"
  chown -R "$owner" "$d/postgres"
  if [ ! -f "$d/postgres/data/PG_VERSION" ]; then
    printf 'postgres\n' > "$d/postgres/pwfile" && chown "$owner" "$d/postgres/pwfile"
    (cd / && "${run[@]}" "$bin/initdb -D '$d/postgres/data' -U postgres --pwfile='$d/postgres/pwfile' --auth-local=trust --auth-host=scram-sha-256 -E UTF8" >/dev/null) ||
      { _svc_log "ERROR: initdb failed for the TLS PostgreSQL instance"; return 1; }
    # TLS only: no plain host line, so a client without TLS is refused.
    printf 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n' > "$d/postgres/data/pg_hba.conf"
    chown "$owner" "$d/postgres/data/pg_hba.conf"
  fi
  _svc_log "starting PostgreSQL 15 with ssl=on (hostssl only) on port $port"
  (cd / && "${run[@]}" "$bin/pg_ctl -D '$d/postgres/data' -l '$d/postgres/postgres.log' -w -t 60 -o \"-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$d/postgres' -c ssl=on -c ssl_cert_file='$d/postgres/server.pem' -c ssl_key_file='$d/postgres/server.key' -c ssl_ca_file='$d/postgres/ca.pem' -c max_connections=100 -c shared_buffers=16MB\" start" >/dev/null) ||
    { tail -n 20 "$d/postgres/postgres.log" >&2; return 1; }
  _svc_wait_port "$port" 60 "PostgreSQL TLS instance"
}

integration_tls_broker() {
  local d
  d=$(_tls_dir)
  mkdir -p "$d" && chmod 755 "$d"
  _tls_certificates "$d" || return 1
  _tls_rabbitmq "$d" || return 1
  export INTEGRATION_TLS_DIR="$d" INTEGRATION_TLS_CA="$d/certs/ca.pem"
  export INTEGRATION_TLS_RABBITMQ_URI="amqps://guest:guest@localhost:${INTEGRATION_TLS_AMQPS_PORT:-5691}/"
  export INTEGRATION_TLS_RABBITMQ_MANAGEMENT_URI="http://localhost:${INTEGRATION_TLS_MANAGEMENT_PORT:-15691}/"
  export INTEGRATION_TLS_CLIENT_CERTIFICATE="$d/certs/client.pfx" INTEGRATION_TLS_ROGUE_CLIENT_CERTIFICATE="$d/certs/rogue-client.pfx"
  export INTEGRATION_TLS_CLIENT_PASSPHRASE="${INTEGRATION_TLS_CLIENT_PASSPHRASE:-integration-tls}"
  _svc_log "RabbitMQ TLS node amqps://localhost:${INTEGRATION_TLS_AMQPS_PORT:-5691} (CA $d/certs/ca.pem)"
}

integration_tls_postgres() {
  local d
  d=$(_tls_dir)
  mkdir -p "$d" && chmod 755 "$d"
  _tls_certificates "$d" || return 1
  _tls_postgres "$d" || return 1
  export INTEGRATION_TLS_DIR="$d" INTEGRATION_TLS_CA="$d/certs/ca.pem"
  export INTEGRATION_TLS_POSTGRES="Host=localhost;Port=${INTEGRATION_TLS_POSTGRES_PORT:-5491};Username=postgres;Password=postgres;Database=postgres;SSL Mode=VerifyFull;Root Certificate=$d/certs/ca.pem"
  _svc_log "PostgreSQL TLS instance localhost:${INTEGRATION_TLS_POSTGRES_PORT:-5491} (sslmode=verify-full)"
}

# Both TLS services.
integration_tls() { integration_tls_broker && integration_tls_postgres; }

# Stops the TLS node and instance started by integration_tls (only those: by their node name and data directory).
integration_tls_stop() {
  local d
  d=$(_tls_dir)
  if [ -f "$d/rabbitmq/home/.erlang.cookie" ]; then
    HOME="$d/rabbitmq/home" RABBITMQ_CONF_ENV_FILE="$d/rabbitmq/rabbitmq-env.conf" \
      /usr/lib/rabbitmq/bin/rabbitmqctl -n rabbit-tls@localhost -q stop >/dev/null 2>&1 || true
  fi
  if [ -f "$d/postgres/data/postmaster.pid" ]; then
    if [ "$(id -u)" = 0 ]; then
      (cd / && su postgres -s /bin/sh -c "/usr/lib/postgresql/15/bin/pg_ctl -D '$d/postgres/data' -m fast stop" >/dev/null 2>&1) || true
    else
      /usr/lib/postgresql/15/bin/pg_ctl -D "$d/postgres/data" -m fast stop >/dev/null 2>&1 || true
    fi
  fi
}
