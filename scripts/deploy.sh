#!/usr/bin/env bash
# make deploy STACK=dev|prod: a first or a later deploy of a stack in one command.
#   1. a stack with no registries yet (first deploy): the infrastructure and the registries alone
#      (workloads=false): nothing needs the Kubernetes API or an image;
#   2. images for every service, tagged IMAGE_TAG (default: the commit), pushed to its ECR;
#   3. the API tunnel (kubeApiAccess tunnel), then everything, with imageTag=IMAGE_TAG.
# Needs the Pulumi CLI logged in, AWS credentials, the AWS CLI, the Session Manager plugin,
# and Docker with buildx (README: Deploying for real). Each pulumi up runs the policy pack.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${STACK:?set STACK=dev or prod}"
IMAGE_TAG=${IMAGE_TAG:-$(git rev-parse HEAD)}
[ "$IMAGE_TAG" != latest ] || { echo "deploy: the tag latest is refused (ECR tags are immutable; deploy by commit)" >&2; exit 1; }
for tool in pulumi aws docker kubectl curl; do
  command -v "$tool" >/dev/null || { echo "deploy: $tool is not installed (README: Deploying for real, prerequisites)" >&2; exit 1; }
done
# A CLI or analyzer too old for the policy pack would pass every rule without reading it.
bash scripts/pulumi-preflight.sh
up() { pulumi up --yes --stack "$STACK" --policy-pack ./policies "$@"; }

pulumi stack select --create "$STACK"
if [ "$(pulumi config get environment --stack "$STACK" 2>/dev/null)" = prod ] &&
   [ -z "$(pulumi config get alarmEmails --stack "$STACK" 2>/dev/null | tr -d '[]" \n')" ]; then
  echo "deploy: warning: stack $STACK sets no alarmEmails: its alarms will mail nobody" >&2
  echo "        (pulumi config set --path 'alarmEmails[0]' oncall@example.com --stack $STACK)" >&2
fi
if ! pulumi stack output repositoryUrls --stack "$STACK" >/dev/null 2>&1; then
  # EKS makes whoever creates the cluster an admin itself (pulumi-eks v2 always asks it to); a
  # second access entry for the same principal would fail the deploy.
  me=$(aws sts get-caller-identity --query Arn --output text | sed -E 's#:sts::([0-9]+):assumed-role/([^/]+)/.*#:iam::\1:role/\2#')
  if pulumi config get clusterAdminArns --stack "$STACK" 2>/dev/null | grep -q "/${me##*/}\""; then
    echo "deploy: you ($me) are in clusterAdminArns; EKS already makes the cluster's creator an admin." >&2
    echo "        Remove yourself from clusterAdminArns for the first deploy, or run it as another principal." >&2
    exit 1
  fi
  echo "deploy: first deploy of $STACK, stage 1: infrastructure and registries"
  up --config workloads=false
fi

echo "deploy: stage 2: images tagged $IMAGE_TAG"
make push STACK="$STACK" IMAGE_TAG="$IMAGE_TAG"

if [ "$(pulumi config get kubeApiAccess --stack "$STACK" 2>/dev/null || echo tunnel)" = tunnel ]; then
  trap 'bash scripts/api-tunnel.sh close "$STACK"' EXIT
  bash scripts/api-tunnel.sh open "$STACK"
fi
echo "deploy: stage 3: everything, with imageTag=$IMAGE_TAG"
up --config workloads=true --config imageTag="$IMAGE_TAG"
pulumi stack output apiUrl --stack "$STACK"
