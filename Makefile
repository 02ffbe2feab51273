# shopmesh — see README.md for what each target does.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
SERVICES    := gateway users products orders

STACK       ?= dev

.PHONY: run test lint build plan policy bench-gateway help

help:
	@echo "make run    start the gateway (:8080), users, products and orders locally (in memory; nothing to install)"
	@echo "make test   run every test; PostgreSQL tests need DATABASE_URL (see README)"
	@echo "make lint   gofmt, go vet and staticcheck"
	@echo "make build  build the service binaries and the shopmesh CLI into bin/"
	@echo "make plan   STACK=dev|prod: the Pulumi program's resources for a stack, offline"
	@echo "make policy STACK=dev|prod: the policy pack on that offline plan; fails on a mandatory violation"
	@echo "make bench-gateway  the gateway against nginx on this machine (installs nginx and wrk)"

# cmd/localshop is `shopmesh run` without the Pulumi program linked in: it builds in seconds.
run:
	$(GO) run ./cmd/localshop

# -count=1: tests that talk to PostgreSQL must really run, never come from the test cache.
test:
	$(GO) test -count=1 ./...

lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/shopmesh $(addprefix ./cmd/,$(SERVICES))

plan:
	$(GO) run ./cmd/shopmesh plan --stack $(STACK)

policy:
	$(GO) run ./cmd/shopmesh policy check --stack $(STACK)

# Installs nginx and wrk with apt when missing; prints req/s, p50, p99 and the ratios.
bench-gateway:
	bash scripts/bench-gateway.sh
