#!/usr/bin/env bash
# make bench-gateway: the gateway against nginx on this machine, both in front of the same
# trivial upstream on 127.0.0.1. Installs nginx and wrk through apt when they are missing.
# Prints throughput (wrk, closed loop) and latency at a fixed 2,000 req/s (open loop).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}   # per wrk run, whole seconds; a latency round lasts twice as long
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
RATE=${RATE:-2000}          # fixed-rate latency runs
ROUNDS=${ROUNDS:-3}         # rounds of throughput and of latency; the targets alternate within each
[[ $DURATION =~ ^[0-9]+s$ ]] || { echo "bench: DURATION must be whole seconds, like 10s (got $DURATION)"; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  echo "bench: installing nginx and wrk"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi

echo "bench: building"
go build -o "$work/" ./bench/upstream ./bench/load ./bench/plainproxy ./bench/loopproxy ./bench/connmem ./cmd/gateway ./cmd/users

wait_for() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "bench: $1 never answered"; exit 1; }

"$work/upstream" -addr 127.0.0.1:9001 & pids+=($!)
"$work/plainproxy" -addr 127.0.0.1:9005 -upstream http://127.0.0.1:9001 2>/dev/null & pids+=($!)
# The other design, event loops over epoll (bench/loopproxy): bare, with the headers the gateway
# adds to every upstream request, and answering 429 with no work at all.
"$work/loopproxy" -addr 127.0.0.1:9016 -upstream 127.0.0.1:9001 & pids+=($!)
"$work/loopproxy" -addr 127.0.0.1:9018 -upstream 127.0.0.1:9001 -headers & pids+=($!)
"$work/loopproxy" -addr 127.0.0.1:9017 -reject & pids+=($!)
HTTP_ADDR=127.0.0.1:9004 LOG_LEVEL=warn "$work/users" >/dev/null & pids+=($!)

cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server 127.0.0.1:9001; keepalive 128; }
  # The flood comparison: nginx's own limiter at the gateway's flood limit, 1 request/s.
  limit_req_zone \$binary_remote_addr zone=flood:10m rate=1r/s;
  limit_req_status 429;
  server {
    listen 127.0.0.1:9002;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /flood/ { limit_req zone=flood; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  # nginx as a gateway (nginxgw): what the gateway does to every request, as far as nginx can
  # without JWT: X-Forwarded-For, -Proto, -Host and a request id upstream, the request id back
  # to the client, and a rate-limit check set never to refuse. The plain server above passes
  # requests through unchanged.
  limit_req_zone \$binary_remote_addr zone=high:10m rate=1000000r/s;
  server {
    listen 127.0.0.1:9011;
    location / {
      limit_req zone=high burst=1000000 nodelay;
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host; proxy_set_header X-Request-Id \$request_id;
      add_header X-Request-Id \$request_id always;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)

# The gateway checks a real JWT and takes a rate-limit token on every request; the limit is
# set high enough never to refuse. Its per-request log is off (LOG_LEVEL=warn), as nginx's is.
cat > "$work/routes.yaml" <<ROUTES
rate_limits:
  high: {rate: 1000000000, burst: 1000000000}
  low: {rate: 1, burst: 1}
routes:
  - {name: bench, prefix: /bench, auth: required, rate_limit: high, upstreams: [{url: "http://127.0.0.1:9001"}]}
  - {name: flood, prefix: /flood, auth: required, rate_limit: low, upstreams: [{url: "http://127.0.0.1:9001"}]}
  - {name: hold, prefix: /hold, upstreams: [{url: "http://127.0.0.1:9008"}]}
ROUTES
HTTP_ADDR=127.0.0.1:9003 LOG_LEVEL=warn ROUTES_FILE="$work/routes.yaml" \
  JWKS_URL=http://127.0.0.1:9004/.well-known/jwks.json "$work/gateway" >/dev/null & pids+=($!)
gateway_pid=$!
# The same gateway on its event-loop engine (GATEWAY_ENGINE=loop).
HTTP_ADDR=127.0.0.1:9019 LOG_LEVEL=warn ROUTES_FILE="$work/routes.yaml" GATEWAY_ENGINE=loop \
  JWKS_URL=http://127.0.0.1:9004/.well-known/jwks.json "$work/gateway" >/dev/null & pids+=($!)
loop_pid=$!
# The same gateway with tracing on: 1 % of requests sampled, spans exported over OTLP/HTTP to the
# trivial upstream, which accepts anything (the exporter's complaints about its answer go to
# /dev/null with the rest of the log).
HTTP_ADDR=127.0.0.1:9006 LOG_LEVEL=warn ROUTES_FILE="$work/routes.yaml" \
  JWKS_URL=http://127.0.0.1:9004/.well-known/jwks.json OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9001 \
  OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 "$work/gateway" >/dev/null 2>&1 & pids+=($!)

wait_for http://127.0.0.1:9001/ ; wait_for http://127.0.0.1:9002/ ; wait_for http://127.0.0.1:9011/ ; wait_for http://127.0.0.1:9005/ ; wait_for http://127.0.0.1:9016/ ; wait_for http://127.0.0.1:9018/ ; wait_for http://127.0.0.1:9003/healthz ; wait_for http://127.0.0.1:9006/healthz ; wait_for http://127.0.0.1:9019/healthz ; wait_for http://127.0.0.1:9004/healthz
curl -fsS -o /dev/null -X POST http://127.0.0.1:9004/users -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password","name":"Bench"}'
token=$(curl -fsS -X POST http://127.0.0.1:9004/users/login -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
auth="Authorization: Bearer $token"
for port in 9003 9019; do
  curl -fsS -o /dev/null -H "$auth" "http://127.0.0.1:$port/bench/" || { echo "bench: the gateway on $port refused the token"; exit 1; }
done

# Every target gets the same request, token included: the same bytes to read and to pass on,
# so the ratios compare the work each proxy does with them, not the size of the requests.

# wrk prints "Requests/sec: N" and, with --latency, "50% X" and "99% Y" lines.
wrk_run() { # name url
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "$auth" "$2")
  echo "$out" > "$work/wrk-$1.txt"
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  printf '%-10s %12s %10s %10s %10s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
  eval "rps_$1=$rps"
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo
echo "throughput: wrk -t$THREADS -c$CONNS -d$DURATION, 127.0.0.1, $(nproc) cores shared by load and servers"
echo "(the machine's speed drifts between runs: the targets alternate and ratios are taken per round)"
printf '%-10s %12s %10s %10s %10s\n' target req/s p50 p99 non-2xx
gn="" gd="" pn="" tg="" ln="" lh="" en="" eg=""
# rps_<target> are set by wrk_run through eval.
# shellcheck disable=SC2154
for _ in $(seq 1 "$ROUNDS"); do
  wrk_run direct  http://127.0.0.1:9001/bench/x
  wrk_run nginx   http://127.0.0.1:9002/bench/x
  wrk_run nginxgw http://127.0.0.1:9011/bench/x
  wrk_run gateway http://127.0.0.1:9003/bench/x
  wrk_run plain   http://127.0.0.1:9005/bench/x
  wrk_run engine  http://127.0.0.1:9019/bench/x
  wrk_run loop    http://127.0.0.1:9016/bench/x
  wrk_run looph   http://127.0.0.1:9018/bench/x
  ln="$ln $(awk -v f="$rps_loop" -v n="$rps_nginx" 'BEGIN {printf "%.3f", f/n}')"
  lh="$lh $(awk -v f="$rps_looph" -v n="$rps_nginx" 'BEGIN {printf "%.3f", f/n}')"
  en="$en $(awk -v f="$rps_engine" -v n="$rps_nginx" 'BEGIN {printf "%.3f", f/n}')"
  eg="$eg $(awk -v f="$rps_engine" -v n="$rps_nginxgw" 'BEGIN {printf "%.3f", f/n}')"
  wrk_run traced  http://127.0.0.1:9006/bench/x
  tg="$tg $(awk -v t="$rps_traced" -v g="$rps_gateway" 'BEGIN {printf "%.3f", t/g}')"
  gn="$gn $(awk -v g="$rps_gateway" -v n="$rps_nginx" 'BEGIN {printf "%.3f", g/n}')"
  gd="$gd $(awk -v g="$rps_gateway" -v d="$rps_direct" 'BEGIN {printf "%.3f", g/d}')"
  pn="$pn $(awk -v p="$rps_plain" -v n="$rps_nginx" 'BEGIN {printf "%.3f", p/n}')"
done
echo
echo "gateway/nginx  per round:$gn   median $(echo "$gn" | median)   (target >= 0.80)"
echo "gateway/direct per round:$gd   median $(echo "$gd" | median)"
echo "plain/nginx    per round:$pn   median $(echo "$pn" | median)   (a bare httputil.ReverseProxy, for scale)"
echo "loopgw/nginx   per round:$en   median $(echo "$en" | median)   (the event-loop engine, GATEWAY_ENGINE=loop; target >= 0.80)"
echo "loopgw/nginxgw per round:$eg   median $(echo "$eg" | median)   (the same against nginx doing the gateway's header work and a limit check)"
echo "loop/nginx     per round:$ln   median $(echo "$ln" | median)   (bare event loops over epoll, bench/loopproxy)"
echo "looph/nginx    per round:$lh   median $(echo "$lh" | median)   (the same, adding the gateway's upstream headers)"
echo "traced/gateway per round:$tg   median $(echo "$tg" | median)   (tracing on, 1 % sampled, against off)"
echo
echo "latency at a fixed $RATE req/s (open loop, bench/load; $ROUNDS rounds; p50 in us)"
echo "(the targets take turns every 100 ms within each round, so that each has the same share of"
echo " whatever else the machine does; the added p50 over direct is taken per round)"
targets="direct nginx nginxgw gateway engine loop looph traced"
declare -A added
for _ in $(seq 1 "$ROUNDS"); do
  args=()
  for t in $targets; do
    case $t in direct) port=9001 ;; nginx) port=9002 ;; nginxgw) port=9011 ;; gateway) port=9003 ;;
      engine) port=9019 ;; loop) port=9016 ;; looph) port=9018 ;; traced) port=9006 ;; esac
    args+=(--target "$t=http://127.0.0.1:$port/bench/x")
  done
  # A round lasts DURATION x 2: each of the eight targets has a quarter of DURATION of it.
  secs=$(awk -v d="${DURATION%s}" 'BEGIN {print d * 2}')
  out=$("$work/load" "${args[@]}" --rate "$RATE" --duration "${secs}s" --turn 100ms --header "$auth")
  echo "$out"
  declare -A p50=()
  for t in $targets; do p50[$t]=$(echo "$out" | awk -v t="$t" '$1==t' | sed -E 's/.*p50 ([0-9]+)us.*/\1/'); done
  for t in $targets; do added[$t]="${added[$t]:-} $((p50[$t] - p50[direct]))"; done
done
echo
for t in $targets; do
  [ "$t" = direct ] && continue
  printf 'added p50 %-8s per round:%s   median %s us\n' "$t" "${added[$t]}" "$(echo "${added[$t]}" | median)"
done
echo "(target: engine's added p50 <= nginx's. nginx passes requests through unchanged; nginxgw adds the"
echo " gateway's upstream headers and request id and checks a limit, as the engine does; looph - loop is"
echo " what the upstream headers alone cost a proxy that does nothing else)"

echo
echo "rejections: the same token over a 1 req/s limit (every answer after the first is 429)"
wrk_run flood http://127.0.0.1:9003/flood/x
wrk_run engineflood http://127.0.0.1:9019/flood/x
wrk_run nginxflood http://127.0.0.1:9002/flood/x
wrk_run loopreject http://127.0.0.1:9017/flood/x   # event loops answering 429 with no work at all

echo
echo "memory: resident set growth of each gateway process (bench/connmem)"
"$work/connmem" --proxy 127.0.0.1:9003 --pid "$gateway_pid" --label gateway --header "$auth"
"$work/connmem" --proxy 127.0.0.1:9019 --pid "$loop_pid" --label loop --header "$auth"
