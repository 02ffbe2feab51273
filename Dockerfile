# syntax=docker/dockerfile:1.7
# One image per service: docker buildx build --build-arg SERVICE=orders --platform linux/amd64,linux/arm64 .
# (make images / make push). The build stage cross-compiles on the builder's own platform, so
# arm64 images need no emulation; the result is a static binary on distroless, as non-root.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG SERVICE
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Keep this command the same as the Makefile's build target (a test compares them).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    test -n "$SERVICE" || { echo "set --build-arg SERVICE=gateway|users|products|orders" >&2; exit 1; } && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags=-s -o /out/service ./cmd/$SERVICE

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.source="https://github.com/shopmesh/shopmesh" \
      org.opencontainers.image.title="shopmesh-${SERVICE}"
COPY --from=build /out/service /service
# The RDS CA bundle (all regions) that DATABASE_URL's sslrootcert names: the services verify the
# database's certificate and name (sslmode=verify-full).
ADD --chmod=444 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
# 65532 is distroless's nonroot user; the Deployments run as it too (runAsNonRoot).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/service"]
