#!/usr/bin/env bash
# The API tunnel of a stack: an SSM port forward from 127.0.0.1:<apiTunnelPort> through the stack's
# tunnel instance to the cluster's private API endpoint. Needs the AWS CLI with credentials and
# the Session Manager plugin, and the Pulumi CLI logged in to the stack's backend.
#
#   scripts/api-tunnel.sh open STACK    start it in the background, wait until it answers, and write
#                                       .shopmesh/kubeconfig-STACK for kubectl (KUBECONFIG=…)
#   scripts/api-tunnel.sh close STACK   stop it
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:-}; stack=${2:-}
if [ -z "$stack" ] || { [ "$action" != open ] && [ "$action" != close ]; }; then
  echo "usage: $0 open|close STACK" >&2; exit 2
fi
mkdir -p .shopmesh
pidfile=.shopmesh/tunnel-$stack.pid

if [ "$action" = close ]; then
  if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
  exit 0
fi

for tool in aws session-manager-plugin pulumi; do
  command -v "$tool" >/dev/null || { echo "api-tunnel: $tool is not installed (README: Deploying for real, prerequisites)" >&2; exit 1; }
done
instance=$(pulumi stack output apiTunnelInstanceId --stack "$stack" 2>/dev/null) || {
  echo "api-tunnel: stack $stack has no apiTunnelInstanceId output: deploy its infrastructure first (make deploy), or it uses kubeApiAccess public" >&2; exit 1; }
endpoint=$(pulumi stack output clusterEndpoint --stack "$stack")
region=$(pulumi config get aws:region --stack "$stack")
port=$(pulumi config get apiTunnelPort --stack "$stack" 2>/dev/null || echo 8443)
host=${endpoint#https://}

# start forwards 127.0.0.1:$port to the endpoint through the instance, in the background.
start() {
  aws ssm start-session --region "$region" --target "$instance" \
    --document-name AWS-StartPortForwardingSessionToRemoteHost \
    --parameters "{\"host\":[\"$host\"],\"portNumber\":[\"443\"],\"localPortNumber\":[\"$port\"]}" \
    >".shopmesh/tunnel-$stack.log" 2>&1 &
  echo $! >"$pidfile"
}

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "api-tunnel: already open on 127.0.0.1:$port (pid $(cat "$pidfile"))"
else
  start
fi
# The SSM agent on a new instance takes a minute or two to register; the session fails until then.
# answers_as_stack: the port's TLS server proves it is this stack's API server (its certificate
# chains to this cluster's CA), not another stack's tunnel holding the same port.
answers_as_stack() {
  local ca=.shopmesh/ca-$stack.pem
  sed -n 's/.*"\{0,1\}certificate-authority-data"\{0,1\}: *"\{0,1\}\([A-Za-z0-9+/=]*\)"\{0,1\}.*/\1/p' ".shopmesh/kubeconfig-$stack" | head -n1 | base64 -d >"$ca" 2>/dev/null || return 1
  curl -s -o /dev/null --max-time 10 --cacert "$ca" --connect-to "$host:443:127.0.0.1:$port" "https://$host/version"
}
for _ in $(seq 1 90); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    pulumi stack output kubeconfig --show-secrets --stack "$stack" >".shopmesh/kubeconfig-$stack"
    chmod 600 ".shopmesh/kubeconfig-$stack"
    if ! answers_as_stack; then
      echo "api-tunnel: 127.0.0.1:$port answers, but not as stack $stack's API server ($host): another stack's tunnel holds the port; close it (scripts/api-tunnel.sh close OTHER) or give the stacks different apiTunnelPort" >&2
      exit 1
    fi
    echo "api-tunnel: 127.0.0.1:$port -> $host; kubectl: KUBECONFIG=.shopmesh/kubeconfig-$stack kubectl get nodes"
    exit 0
  fi
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then # the session ended: retry until the agent is up
    start
  fi
  sleep 2
done
echo "api-tunnel: 127.0.0.1:$port did not open in 3 minutes; see .shopmesh/tunnel-$stack.log" >&2
exit 1
