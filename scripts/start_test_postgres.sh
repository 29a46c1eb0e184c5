#!/usr/bin/env bash
# Starts a PostgreSQL server for the ledger tests (Debian's postgresql, installed if missing) and prints the URL of
# a database for them: role moe (password moe), database moe_test, on 127.0.0.1:5432. Run as root (CI).
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } >/dev/null
fi
version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
if ! pg_lsclusters -h | grep -q .; then pg_createcluster "$version" main >/dev/null; fi
cluster="$(pg_lsclusters -h | head -1 | awk '{print $1" "$2}')"
pg_ctlcluster $cluster start >/dev/null 2>&1 || true   # already running is fine
for _ in $(seq 50); do su postgres -c "psql -qAtc 'SELECT 1'" >/dev/null 2>&1 && break; sleep 0.2; done
su postgres -c "psql -qAtc \"SELECT 1 FROM pg_roles WHERE rolname = 'moe'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE moe LOGIN PASSWORD 'moe'\"" >/dev/null
su postgres -c "psql -qAtc \"SELECT 1 FROM pg_database WHERE datname = 'moe_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O moe moe_test"
echo "postgres://moe:moe@127.0.0.1:5432/moe_test"
