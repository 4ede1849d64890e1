#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit + integration over real HTTP), then the SDK
# conformance tests with the official Python SDKs from PyPI against a real `posture serve`, and
# the AWS tests against a real moto_server (started by the tests on a free loopback port).
# Creates .venv on first use. Needs: cargo, python3 (with venv), network access to PyPI once.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo build"
cargo build --workspace --all-targets --locked
echo "==> cargo test"
cargo test --workspace --locked

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import alibabacloud_sas20181203, aliyunsdkcore, pytest, moto, boto3" 2>/dev/null; then
  echo "==> creating .venv with the official SDKs and moto"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
fi
echo "==> SDK conformance (pytest)"
POSTURE_BIN="$PWD/target/debug/posture" .venv/bin/python -m pytest -q tests/sdk
