# Sourced by scripts/demo, scripts/test and .ci/run: make PostgreSQL and Redis reachable.
#
# Order of attempts: already running → the machine's own cluster/server (pg_ctlcluster,
# redis-server) → a private instance under .local/ from the installed binaries →
# install them with apt-get (when root) → say exactly what to install.

PGHOST_ADDR=127.0.0.1
PGPORT_NUM=5432
REDIS_PORT_NUM=6379
LOCAL_DIR="$(pwd)/.local"

pg_up() { pg_isready -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT_NUM" ping 2>/dev/null | grep -q PONG; }

wait_for() {  # wait_for <check-function> <name>
  for _ in $(seq 1 60); do "$1" && return 0; sleep 0.5; done
  echo "error: $2 did not come up" >&2; return 1
}

install_packages() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $* with apt-get…" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  else
    return 1
  fi
}

ensure_sqitch() {  # the real sqitch, which the suite asks whether it agrees with the bot's ledger
  command -v sqitch >/dev/null && perl -MDBD::Pg -e1 2>/dev/null && return 0
  install_packages sqitch libdbd-pg-perl \
    || { [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null && install_packages sqitch libdbd-pg-perl; } \
    || { echo "error: install sqitch and libdbd-pg-perl (apt-get install sqitch libdbd-pg-perl)" >&2; return 1; }
}

start_postgres() {
  pg_up && return 0
  command -v pg_isready >/dev/null || install_packages postgresql postgresql-client || {
    echo "error: PostgreSQL is not installed: install postgresql (15+) and postgresql-client" >&2; return 1; }
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start 2>/dev/null || true
    wait_for pg_up PostgreSQL && return 0
  fi
  local bindir; bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -n "$bindir" ] || { echo "error: no PostgreSQL server binaries found" >&2; return 1; }
  if [ ! -d "$LOCAL_DIR/pg" ]; then
    mkdir -p "$LOCAL_DIR"
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$LOCAL_DIR"; su postgres -c "$bindir/initdb -D $LOCAL_DIR/pg -A trust -U postgres" >/dev/null
    else "$bindir/initdb" -D "$LOCAL_DIR/pg" -A trust -U postgres >/dev/null; fi
  fi
  local start="$bindir/pg_ctl -D $LOCAL_DIR/pg -l $LOCAL_DIR/pg.log -o '-p $PGPORT_NUM -k /tmp' start"
  if [ "$(id -u)" = 0 ]; then su postgres -c "$start" >/dev/null; else eval "$start" >/dev/null; fi
  wait_for pg_up PostgreSQL
}

start_redis() {
  redis_up && return 0
  command -v redis-server >/dev/null || install_packages redis-server || {
    echo "error: Redis is not installed: install redis-server (7+)" >&2; return 1; }
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT_NUM" --save "" --appendonly no >/dev/null
  wait_for redis_up Redis
}

ensure_venv() {  # a project venv with the bot and its test tools installed
  if [ ! -x .venv/bin/python ] || [ ! -x .venv/bin/squawk ] || [ ! -x .venv/bin/ruff ] || [ ! -x .venv/bin/mypy ] || ! .venv/bin/python -c "import bot, slack_bolt, pglast, pytest, hypothesis, websockets, importlinter" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/pip install -q -e ".[test]"
  fi
}
