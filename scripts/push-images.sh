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

# Only the checked-out commit, unchanged, is ever built: an image tag names its commit's code,
# and ECR's tags are immutable, so an image built from anything else would stay wrong.
head=$(git rev-parse HEAD)
dirty=$(git status --porcelain)

urls=$(pulumi stack output repositoryUrls --json --stack "$STACK") || {
  echo "push: stack $STACK has no repositoryUrls output yet; create the registry first (README: Bootstrapping)"; exit 1; }
# repository SERVICE: its URL in the output ({"gateway": "<account>.dkr.ecr.<region>.amazonaws.com/…", …}).
repository() { echo "$urls" | sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n1; }
first=$(repository "${SERVICES%% *}")
[ -n "$first" ] || { echo "push: the stack's repositoryUrls output names no ${SERVICES%% *} repository: $urls" >&2; exit 1; }
registry=${first%%/*}
region=$(echo "$registry" | cut -d. -f4)
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"

# A multi-platform image can be pushed by a builder of the docker-container driver; Docker
# Engine's default builder (the docker driver, without the containerd image store) cannot.
builder=shopmesh
if ! docker buildx inspect "$builder" >/dev/null 2>&1; then
  docker buildx create --name "$builder" --driver docker-container --bootstrap >/dev/null
fi

for svc in $SERVICES; do
  repo=$(repository "$svc")
  [ -n "$repo" ] || { echo "push: the stack's repositoryUrls output names no $svc repository" >&2; exit 1; }
  # Tags are immutable: a re-run of the same commit finds its images already there.
  if aws ecr describe-images --region "$region" --repository-name "${repo#*/}" --image-ids imageTag="$IMAGE_TAG" >/dev/null 2>&1; then
    echo "push: $repo:$IMAGE_TAG exists"; continue
  fi
  if [ "$IMAGE_TAG" != "$head" ]; then
    echo "push: $repo:$IMAGE_TAG is not in ECR, and IMAGE_TAG is not the checked-out commit ($head):" >&2
    echo "      building would push this checkout's code under another commit's tag. Check out $IMAGE_TAG" >&2
    echo "      (git checkout $IMAGE_TAG) to build its images, or deploy a tag whose images ECR has." >&2
    exit 1
  fi
  if [ -n "$dirty" ]; then
    echo "push: $repo:$IMAGE_TAG is not in ECR, and the work tree has changes the commit does not:" >&2
    echo "      commit them (a new tag) or stash them, then push again." >&2
    exit 1
  fi
  docker buildx build --builder "$builder" --platform "$PLATFORMS" --build-arg SERVICE="$svc" --provenance=false \
    -t "$repo:$IMAGE_TAG" --push .
done
