#!/usr/bin/env bash
# Prepare a local PostgreSQL for `make test`: the shopmesh_test database, and password checks for
# the members of shopmesh_password_auth (the rotation test changes such a role's password while a
# service runs; a server that trusts 127.0.0.1 would let the old password in). Everyone else keeps
# the server's own rules. Run as a user that may edit pg_hba.conf (root on a Debian machine).
set -euo pipefail
PSQL=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -Atq)
db=${1:-shopmesh_test}
group=shopmesh_password_auth
rule="host all +$group 127.0.0.1/32 scram-sha-256"

if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
  "${PSQL[@]}" -c "CREATE DATABASE $db"
fi
"${PSQL[@]}" -c "DO \$\$ BEGIN CREATE ROLE $group NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$"
hba=$("${PSQL[@]}" -c 'SHOW hba_file')
if ! grep -qxF "$rule" "$hba"; then
  # pg_hba.conf is read top down and the first matching line wins.
  sed -i "1i $rule" "$hba"
  "${PSQL[@]}" -c 'SELECT pg_reload_conf()' >/dev/null
  echo "test-postgres: $hba now checks passwords for members of $group"
fi
