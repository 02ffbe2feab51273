#!/usr/bin/env bash
# make bench-login: floods POST /users/login with concurrent wrong-password logins (each for
# its own email, so the per-account lock never answers) and prints the users service's peak
# resident memory and the answers by status. Each row starts a fresh users process:
#   direct          the users service with its defaults (one argon2id check per CPU at a time)
#   direct, unbounded  PASSWORD_CHECKS=100000: what the service did before the bound
#   through gateway the built-in routes' per-address login limit in front
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "bench-login: building"
go build -o "$work/" ./bench/loginflood ./cmd/users ./cmd/gateway

wait_for() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "bench-login: $1 never answered"; exit 1; }

# row LABEL N THROUGH_GATEWAY [ENV...]: a fresh users process (and gateway), one flood.
row() {
  local label=$1 n=$2 gateway=$3; shift 3
  env HTTP_ADDR=127.0.0.1:9101 LOG_LEVEL=error "$@" "$work/users" >/dev/null & local users=$!
  pids+=("$users")
  wait_for http://127.0.0.1:9101/healthz
  local url=http://127.0.0.1:9101/users/login gw=""
  if [ "$gateway" = yes ]; then
    HTTP_ADDR=127.0.0.1:9100 LOG_LEVEL=error USERS_URL=http://127.0.0.1:9101 \
      JWKS_URL=http://127.0.0.1:9101/.well-known/jwks.json "$work/gateway" >/dev/null & gw=$!
    pids+=("$gw")
    wait_for http://127.0.0.1:9100/healthz
    url=http://127.0.0.1:9100/users/login
  fi
  "$work/loginflood" --url "$url" --n "$n" --pid "$users" --label "$label"
  kill "$users" ${gw:+"$gw"}; wait "$users" ${gw:+"$gw"} 2>/dev/null || true
}

echo
echo "concurrent wrong-password logins on $(nproc) cores; peak = the users process's VmHWM"
printf '%-34s %5s %9s %10s   %s\n' setup n time peak "answers (status×count)"
for n in 100 500; do
  row "direct, unbounded (before)" "$n" no PASSWORD_CHECKS=100000 PASSWORD_CHECK_WAIT=10m LOGIN_MAX_FAILURES=100000
  row "direct (defaults)" "$n" no
  row "through the gateway (defaults)" "$n" yes
done
