# shopmesh — see README.md for what each target does.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
SERVICES    := gateway users products orders

STACK       ?= dev
# Static, reproducible binaries; the Dockerfile's build stage runs the same command.
BUILD_FLAGS := -trimpath -ldflags=-s
IMAGE_TAG   ?= $(shell git rev-parse HEAD 2>/dev/null)
PLATFORMS   ?= linux/amd64,linux/arm64
ACTIONLINT  ?= github.com/rhysd/actionlint/cmd/actionlint@v1.7.7
# The Dockerfile linter of Docker's VS Code extension, from the npm registry (needs Node.js).
DOCKERFILE_LINT ?= dockerfile-utils@0.16.3

.PHONY: run test test-services lint build plan policy rehearse deploy-account images push deploy tunnel destroy bench-gateway bench-login scenario-faults help

help:
	@echo "make run    start the gateway (:8080), users, products and orders locally (in memory; nothing to install)"
	@echo "make test   run every test; PostgreSQL tests need DATABASE_URL (see README)"
	@echo "make test-services  the services' tests only: no Pulumi SDK to compile, seconds on a warm cache"
	@echo "make lint   gofmt, go vet and staticcheck"
	@echo "make build  build the service binaries and the shopmesh CLI into bin/"
	@echo "make plan   STACK=dev|prod: the Pulumi program's resources for a stack, offline"
	@echo "make policy STACK=dev|prod: the policy pack on that offline plan; fails on a mandatory violation"
	@echo "make rehearse STACK=dev|prod: run what the stack renders on this machine behind stand-ins of AWS and Istio (DATABASE_URL, REDIS_URL)"
	@echo "make images build every service image for $(PLATFORMS) with docker buildx (needs Docker)"
	@echo "make push   STACK=dev|prod: build and push the images to that stack's ECR repositories, tagged IMAGE_TAG"
	@echo "make deploy-account  once per AWS account, before any stack: the GitHub OIDC provider, API Gateway's CloudWatch role, the permissions boundary"
	@echo "make deploy STACK=dev|prod: first or later deploy: infrastructure, images, API tunnel, pulumi up (see README)"
	@echo "make tunnel STACK=dev|prod: open the stack's API tunnel and write .shopmesh/kubeconfig-STACK for kubectl"
	@echo "make destroy STACK=dev|prod: pulumi destroy through the API tunnel"
	@echo "make bench-gateway  the gateway against nginx on this machine (installs nginx and wrk)"
	@echo "make bench-login    a login flood: the users service's peak memory and answers, with and without the bounds"
	@echo "make scenario-faults  order traffic through crashes and outages; exit 1 on an invariant violation (DATABASE_URL, REDIS_URL)"

# cmd/localshop is `shopmesh run` without the Pulumi program linked in: it builds in seconds.
run:
	$(GO) run ./cmd/localshop

# -count=1: tests that talk to PostgreSQL must really run, never come from the test cache.
test:
	$(GO) test -count=1 ./...

# What a change to a service needs: every package that does not link the Pulumi SDKs.
test-services:
	$(GO) test -count=1 ./api/... ./services/... ./cmd/localshop/... ./bench/... ./rehearsal/...

lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	bash scripts/vulncheck.sh
	$(GO) run $(ACTIONLINT)
	npx --yes $(DOCKERFILE_LINT) lint Dockerfile
	@if command -v shellcheck >/dev/null; then echo "shellcheck scripts/*.sh .ci/run"; shellcheck scripts/*.sh .ci/run; \
	else echo "shellcheck not installed (apt-get install shellcheck): shell scripts not linted"; fi

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o bin/ ./cmd/shopmesh $(addprefix ./cmd/,$(SERVICES))

plan:
	$(GO) run ./cmd/shopmesh plan --stack $(STACK)

policy:
	$(GO) run ./cmd/shopmesh policy check --stack $(STACK)

# Builds the service binaries, then runs them with the stack's rendered configuration.
rehearse:
	$(GO) run ./cmd/shopmesh rehearse --stack $(STACK)

# Multi-architecture images need Docker with buildx; nothing here runs without it.
images:
	@for s in $(SERVICES); do \
	  docker buildx build --platform $(PLATFORMS) --build-arg SERVICE=$$s -t shopmesh/$$s:$(IMAGE_TAG) . || exit 1; \
	done

# The repositories come from the stack's repositoryUrls output (the stack must exist: see
# README, "Bootstrapping").
push:
	STACK=$(STACK) IMAGE_TAG=$(IMAGE_TAG) PLATFORMS=$(PLATFORMS) SERVICES="$(SERVICES)" bash scripts/push-images.sh

# Needs the Pulumi CLI, AWS credentials and CLI, the Session Manager plugin and Docker (README:
# Deploying for real).
# What exists once per AWS account (account/): deployed with administrator credentials.
deploy-account:
	bash scripts/pulumi-preflight.sh
	cd account && pulumi stack select --create main && pulumi up --stack main

deploy:
	STACK=$(STACK) IMAGE_TAG=$(IMAGE_TAG) bash scripts/deploy.sh

tunnel:
	bash scripts/api-tunnel.sh open $(STACK)

# Kubernetes resources are deleted through the tunnel before the tunnel itself goes.
destroy:
	bash scripts/api-tunnel.sh open $(STACK)
	pulumi destroy --stack $(STACK); status=$$?; bash scripts/api-tunnel.sh close $(STACK); exit $$status

# Installs nginx and wrk with apt when missing; prints req/s, p50, p99 and the ratios.
bench-gateway:
	bash scripts/bench-gateway.sh

# Starts its own users service and gateway on 127.0.0.1:9100-9101; prints peak memory and statuses.
bench-login:
	bash scripts/bench-login.sh

# Built with the faults tag, which alone lets orders be told to crash between reserve and store.
scenario-faults:
	$(GO) build -tags faults -o bin/shopmesh-faults ./cmd/shopmesh
	bin/shopmesh-faults scenario faults
