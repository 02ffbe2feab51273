#!/usr/bin/env bash
# The Pulumi CLI and OPA analyzer that the policy pack needs, checked before any preview or up.
# Rules of ./policies read __type, __urn and __name and include stack rules (stack_deny); the
# policy-opa analyzer gives rules those from v0.2.0 on (its CHANGELOG: "Resource metadata in OPA
# policies", "Stack-level policy support"). v0.1.0 hands a rule the resource's properties only
# and runs no stack rules, so with it every rule of the pack is silently inert.
# The CLI installs a pack's analyzer on first use from v3.227.0 on; the analyzer pinned here is
# installed explicitly so that an older one already on the machine is never the newest.
set -euo pipefail
MIN_CLI=3.227.0
MIN_ANALYZER=0.2.0
ANALYZER_VERSION=${ANALYZER_VERSION:-1.1.0}

fail() { echo "pulumi-preflight: $*" >&2; exit 1; }
# at_least A B: version A is B or newer.
at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

command -v pulumi >/dev/null || fail "the Pulumi CLI is not installed: https://www.pulumi.com/docs/install/ (v$MIN_CLI or newer)"
cli=$(pulumi version | tr -d '[:space:]')
cli=${cli#v}
at_least "$cli" "$MIN_CLI" || fail "Pulumi CLI v$cli is older than v$MIN_CLI: upgrade it (https://www.pulumi.com/docs/install/)"

newest_analyzer() { pulumi plugin ls 2>/dev/null | awk '$1 == "policy-opa" && $2 == "analyzer" { print $3 }' | sed 's/^v//' | sort -V | tail -n1; }
analyzer=$(newest_analyzer)
if [ -z "$analyzer" ] || ! at_least "$analyzer" "$MIN_ANALYZER"; then
  echo "pulumi-preflight: installing the OPA analyzer v$ANALYZER_VERSION (found: ${analyzer:-none}; the pack needs v$MIN_ANALYZER or newer)"
  pulumi plugin install analyzer policy-opa "v$ANALYZER_VERSION"
  analyzer=$(newest_analyzer)
  if [ -z "$analyzer" ] || ! at_least "$analyzer" "$MIN_ANALYZER"; then
    fail "the OPA analyzer is ${analyzer:-not installed} after installing v$ANALYZER_VERSION; the pack needs v$MIN_ANALYZER or newer"
  fi
fi
echo "pulumi-preflight: Pulumi CLI v$cli, OPA analyzer policy-opa v$analyzer"
