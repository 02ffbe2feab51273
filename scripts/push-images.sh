#!/usr/bin/env bash
# make push: build every service image for PLATFORMS and push it, tagged IMAGE_TAG, to the ECR
# repositories of STACK (its repositoryUrls output). Needs Docker with buildx, the AWS CLI with
# credentials, and the Pulumi CLI logged in to the stack's backend.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${STACK:?set STACK=dev or prod}" "${IMAGE_TAG:?set IMAGE_TAG (CI uses the commit SHA)}"
PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64}
SERVICES=${SERVICES:-gateway users products orders}
[ "$IMAGE_TAG" != latest ] || { echo "push: the tag latest is refused (ECR tags are immutable; deploy by commit)"; exit 1; }

urls=$(pulumi stack output repositoryUrls --json --stack "$STACK") || {
  echo "push: stack $STACK has no repositoryUrls output yet; create the registry first (README: Bootstrapping)"; exit 1; }
registry=$(echo "$urls" | python3 -c 'import json,sys; print(next(iter(json.load(sys.stdin).values())).split("/")[0])')
region=$(echo "$registry" | cut -d. -f4)
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"

for svc in $SERVICES; do
  repo=$(echo "$urls" | python3 -c "import json,sys; print(json.load(sys.stdin)['$svc'])")
  # Tags are immutable: a re-run of the same commit finds its images already there.
  if aws ecr describe-images --region "$region" --repository-name "${repo#*/}" --image-ids imageTag="$IMAGE_TAG" >/dev/null 2>&1; then
    echo "push: $repo:$IMAGE_TAG exists"; continue
  fi
  docker buildx build --platform "$PLATFORMS" --build-arg SERVICE="$svc" --provenance=false \
    -t "$repo:$IMAGE_TAG" --push .
done
