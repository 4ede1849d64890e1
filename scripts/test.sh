#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit + integration over real HTTP), then the SDK
# conformance tests with the official Python SDKs from PyPI against a real `posture serve`, and
# the AWS tests against a real moto_server (started by the tests on a free loopback port).
# The store's tests run on SQLite and on PostgreSQL: a throwaway PostgreSQL server is started
# on a free loopback port (scripts/pg.sh) unless POSTURE_TEST_DATABASE_URL names one.
# Creates .venv on first use. Needs: cargo, python3 (with venv), PostgreSQL 15+, openssh-server,
# redis-server, iproute2 and chromium (installed with apt when missing and run as root), network access
# to PyPI once.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${POSTURE_TEST_DATABASE_URL:-}" ]; then
  echo "==> starting PostgreSQL for the tests"
  eval "$(scripts/pg.sh start)"
  trap 'scripts/pg.sh stop "$PG_TEST_DIR"' EXIT
  # It serves TLS too (when openssl is there, which pg.sh installs): the sslmode=verify-full
  # tests must then run.
  if [ -n "${POSTURE_TEST_DATABASE_CA:-}" ]; then export POSTURE_REQUIRE_POSTGRES_TLS=1; fi
fi
export POSTURE_REQUIRE_POSTGRES=1

# The live-instance tests run a real sshd and redis-server, and change the kernel's parameters
# in a network namespace of their own (unshare, ip): installed when missing (as root, with apt),
# without letting the packages start them as services. As root they must then run.
live_packages=()
[ -x /usr/sbin/sshd ] || live_packages+=(openssh-server)
[ -x /usr/bin/redis-server ] || live_packages+=(redis-server)
[ -x /usr/sbin/ip ] || live_packages+=(iproute2)
[ -x /usr/bin/unshare ] || live_packages+=(util-linux)
# The console's end-to-end tests drive Debian's Chromium (Playwright launches it; it downloads
# no browser of its own).
[ -x /usr/bin/chromium ] || live_packages+=(chromium chromium-driver)
if [ ${#live_packages[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing ${live_packages[*]} for the live-instance tests"
  no_start=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && no_start=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${live_packages[@]}"
  if [ -n "$no_start" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
if [ "$(id -u)" = 0 ]; then export POSTURE_REQUIRE_LIVE=1 POSTURE_REQUIRE_BROWSER=1; fi

echo "==> cargo build"
cargo build --workspace --all-targets --locked
echo "==> cargo test"
cargo test --workspace --locked

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import alibabacloud_sas20181203, aliyunsdkcore, pytest, moto, boto3, playwright" 2>/dev/null; then
  echo "==> creating .venv with the official SDKs and moto"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
fi
echo "==> SDK conformance (pytest)"
POSTURE_BIN="$PWD/target/debug/posture" .venv/bin/python -m pytest -q tests/sdk
