# Outpost — see README.md. Every target works from a clean clone.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
PKG      := github.com/outpost-iot/outpost
LDFLAGS  := -s -w -buildid= -X $(PKG)/internal/buildinfo.Version=$(VERSION)
GO       ?= go
GOFLAGS  += -buildvcs=false
export GOFLAGS
BINS     := outpost-hub outpost-gateway outpostctl
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: all build test test-short lint demo bench cross deps clean fuzz

all: build

deps:
	scripts/deps.sh

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(BINS))
	@ls -l bin/

# The whole suite under the race detector; fuzz targets run their seed corpus.
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./... github.com/mochi-mqtt/server/v2 github.com/mochi-mqtt/server/v2/packets

test-short:
	$(GO) test -count=1 -short ./...

# Short coverage-guided fuzzing of every fuzz target (not part of `test`).
fuzz:
	scripts/fuzz.sh 10s

$(STATICCHECK):
	GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: $(STATICCHECK)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Hub plus a gateway on simulated sensors, all on loopback; prints the URLs and a token.
demo: deps build
	scripts/demo.sh

bench: deps build
	scripts/bench.sh

cross:
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/outpost-gateway_linux_armv6 ./cmd/outpost-gateway
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/outpost-gateway_linux_armv7 ./cmd/outpost-gateway
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/outpost-gateway_linux_arm64 ./cmd/outpost-gateway
	@ls -l dist/

clean:
	rm -rf bin dist .demo
