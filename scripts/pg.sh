#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests, on a free loopback port in a temporary directory.
#   eval "$(scripts/pg.sh start)"   starts it; prints POSTURE_TEST_DATABASE_URL and PG_TEST_DIR,
#                                    and POSTURE_TEST_DATABASE_CA: it also serves TLS, with a
#                                    certificate for `localhost` from a CA made for it (openssl)
#   scripts/pg.sh stop DIR           stops it and removes DIR
#   scripts/pg.sh down DIR | up DIR  stops it keeping its data, starts it again on its port
#                                    (a real outage, for the tests)
# Uses the newest /usr/lib/postgresql/*/bin (installed from the distribution's packages when
# missing and running as root). PostgreSQL refuses to run as root: as root, the server runs as
# the `postgres` user. Durability is off (fsync=off): the data is thrown away afterwards.
set -euo pipefail

pg_bin() {
  local v
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$v" ] && echo "/usr/lib/postgresql/$v/bin"
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A CA and a server certificate (DNS:localhost only, so that verify-full to 127.0.0.1 fails
# and to localhost passes) in DIR/tls.
make_tls() {
  local t=$1/tls
  mkdir -p "$t"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=posture test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$t/ext"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -days 7 \
    -extfile "$t/ext" -out "$t/server.pem" 2>/dev/null
  chmod 600 "$t/server.key"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$t"; fi
}

launch() {
  local dir=$1 port tls=""
  port=$(cat "$dir/port")
  if [ -f "$dir/tls/server.pem" ]; then
    tls="-c ssl=on -c ssl_cert_file=$dir/tls/server.pem -c ssl_key_file=$dir/tls/server.key"
  fi
  as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500 $tls" \
    start >&2
}

case "${1:-}" in
start)
  if [ -z "$(pg_bin)" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing PostgreSQL from the distribution's packages" >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    else
      echo "PostgreSQL is not installed (looked in /usr/lib/postgresql): install the postgresql package" >&2
      exit 1
    fi
  fi
  bin=$(pg_bin)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  dir=$(mktemp -d -t posture-pg.XXXXXX)
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log"
  echo "$port" >"$dir/port"
  if ! command -v openssl >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing openssl from the distribution's packages" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >&2 || true
  fi
  if command -v openssl >/dev/null; then
    make_tls "$dir"
  else
    echo "openssl is missing: the test PostgreSQL serves no TLS" >&2
  fi
  launch "$dir"
  echo "export POSTURE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres"
  echo "export PG_TEST_DIR=$dir"
  if [ -f "$dir/tls/ca.pem" ]; then echo "export POSTURE_TEST_DATABASE_CA=$dir/tls/ca.pem"; fi
  ;;
stop)
  dir=${2:?usage: pg.sh stop DIR}
  as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
down)
  dir=${2:?usage: pg.sh down DIR}
  as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >&2
  ;;
up)
  launch "${2:?usage: pg.sh up DIR}"
  ;;
*)
  echo "usage: $0 start | stop DIR | down DIR | up DIR" >&2
  exit 2
  ;;
esac
