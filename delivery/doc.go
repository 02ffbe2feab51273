// Package delivery holds the checks of what ships the platform — the Dockerfile, the Makefile's
// build, the GitHub Actions workflows — that can run without a Docker engine or GitHub.
package delivery
