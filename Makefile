# edgeagent: `make run` starts the agent with simulated sensors, `make test` runs every test.
# `make help` lists the targets.

SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
PKG     := ./cmd/edgeagent

# Debian packages the tests need, by the command that proves they are there.
TEST_DEPS := /usr/sbin/mosquitto:mosquitto /usr/bin/mosquitto_pub:mosquitto-clients \
	/usr/bin/chromium:chromium /usr/bin/qemu-aarch64-static:qemu-user-static \
	/usr/bin/systemd-analyze:systemd

.PHONY: help build run test test-short deps bench soak eval lint cross clean check-systemd check-deb install uninstall deb

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Static binary with the version stamped: bin/edgeagent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edgeagent $(PKG)

run: build ## Run the agent on configs/dev.yaml with 20 simulated sensors (web view on http://127.0.0.1:8080)
	./bin/edgeagent serve --config configs/dev.yaml --simulate 20

deps: ## Install the Debian packages the tests use, when missing (needs root)
	@missing=""; for d in $(TEST_DEPS); do [ -x "$${d%%:*}" ] || missing="$$missing $${d##*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root (or install:$$missing)"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: deps lint check-systemd check-deb ## Install what the tests need, lint, unit/deb checks, then go test -race ./...
	$(GO) test -race -timeout 20m ./...

test-short: ## Unit tests without the slow end-to-end ones
	$(GO) test -short ./...

bench: build ## Micro-benchmarks and end-to-end runs (agent vs bare broker, same load); bench/results.txt (~10 min)
	@mkdir -p bench
	set -o pipefail; { \
	  $(GO) test -run '^$$' -bench . -benchmem -benchtime 100ms -count 3 ./agent/... ./broker/ && \
	  $(GO) test -run '^$$' -bench 'Append$$' -benchmem -benchtime 50000x -count 3 ./storage/ && \
	  $(GO) test -run '^$$' -bench 'Fold$$' -benchmem -benchtime 10x -count 3 ./storage/ && \
	  $(GO) test -run '^$$' -bench 'Open$$' -benchtime 5x -count 3 ./storage/ && \
	  $(GO) test -run '^$$' -bench 'App_endToEnd' -benchtime 100000x -count 3 ./cmd/edgeagent/ && \
	  DUR=15s bench/e2e.sh; } 2>&1 | tee bench/results.txt

soak: deps build ## 30 min at 5,000 readings/s over 5,000 sensors with alerts; CSV in bench/soak.csv; fails on growth (not in make test)
	SOAK_DURATION=30m SOAK_CSV=$(CURDIR)/bench/soak.csv $(GO) test -run '^TestSoak$$' -count 1 -timeout 45m -v ./cmd/edgeagent/

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -d $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

cross: ## Static stripped binaries for Pi-class boards in dist/, with their sizes
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/edgeagent-linux-amd64 $(PKG)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/edgeagent-linux-arm64 $(PKG)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/edgeagent-linux-armv7 $(PKG)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/edgeagent-linux-armv6 $(PKG)
	@for f in dist/edgeagent-linux-*; do stat -c '%n %s' $$f; done | \
		awk '{ printf "%-28s %10d bytes %6.1f MiB%s\n", $$1, $$2, $$2/1048576, ($$2 < 15*1048576 ? "" : "  OVER the 15 MiB target") }'

# Install layout (make install): the unit and sysusers file go where systemd
# looks for locally installed ones; the config only when absent.
PREFIX  ?= /usr/local
DESTDIR ?=
UNITDIR := $(PREFIX)/lib/systemd/system
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
CONFDIR ?= /etc/edgeagent

install: build ## Install binary, unit, user and (if absent) /etc/edgeagent/edgeagent.yaml; daemon-reload (needs root)
	install -D -m 0755 bin/edgeagent $(DESTDIR)$(PREFIX)/bin/edgeagent
	@mkdir -p $(DESTDIR)$(UNITDIR)
	sed 's#/usr/local/bin/edgeagent#$(PREFIX)/bin/edgeagent#g' systemd/edgeagent.service >$(DESTDIR)$(UNITDIR)/edgeagent.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/edgeagent.service
	install -D -m 0644 systemd/edgeagent.sysusers $(DESTDIR)$(SYSUSERSDIR)/edgeagent.conf
	@if [ -z "$(DESTDIR)" ]; then systemd-sysusers $(SYSUSERSDIR)/edgeagent.conf; fi
	@install -d -m 0750 $(DESTDIR)$(CONFDIR)
	@if [ -e $(DESTDIR)$(CONFDIR)/edgeagent.yaml ]; then \
		echo "kept existing $(CONFDIR)/edgeagent.yaml (new example: configs/edgeagent.yaml)"; \
	else install -m 0640 configs/edgeagent.yaml $(DESTDIR)$(CONFDIR)/edgeagent.yaml && echo "installed $(CONFDIR)/edgeagent.yaml: edit it, then systemctl enable --now edgeagent"; fi
	@if [ -z "$(DESTDIR)" ]; then chgrp edgeagent $(CONFDIR) $(CONFDIR)/edgeagent.yaml; fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

uninstall: ## Stop and remove what make install put there; keeps /etc/edgeagent and /var/lib/edgeagent (needs root)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now edgeagent.service 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/edgeagent $(DESTDIR)$(UNITDIR)/edgeagent.service $(DESTDIR)$(SYSUSERSDIR)/edgeagent.conf
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "kept $(CONFDIR) and /var/lib/edgeagent (remove them by hand to forget the config and history)"

deb: cross ## Debian packages in dist/ (amd64, arm64, armhf = armv6 binary, runs on every Raspberry Pi OS)
	packaging/deb/build.sh '$(VERSION)' amd64 dist/edgeagent-linux-amd64 dist
	packaging/deb/build.sh '$(VERSION)' arm64 dist/edgeagent-linux-arm64 dist
	packaging/deb/build.sh '$(VERSION)' armhf dist/edgeagent-linux-armv6 dist

check-systemd: build ## systemd-analyze verify (clean) and security (exposure <= 1.5) of systemd/edgeagent.service
	systemd/check.sh bin/edgeagent

check-deb: build ## Build a .deb, install/upgrade it in a scratch root: an edited conffile survives; make install/uninstall into DESTDIR
	packaging/deb/test.sh bin/edgeagent

clean: ## Remove build output
	rm -rf bin dist

# The NAB corpus and the simulated corpora live beside the repository (../shared/nab);
# a git worktree under <main>/../wt/<name> finds it one level further up.
SHARED  ?= $(firstword $(wildcard ../shared ../../shared))
EVAL_DETECTOR ?= auto
EVAL_OUT ?= bin/eval-results


eval: build ## Replay the full NAB corpus through the default detector and print the NAB score table
	@test -d "$(SHARED)/nab/data" || { echo "NAB corpus not found: set SHARED=path/to/shared"; exit 1; }
	./bin/edgeagent eval --data $(SHARED)/nab/data --labels $(SHARED)/nab/labels/combined_windows.json \
		--out $(EVAL_OUT) --detector $(EVAL_DETECTOR)
	@rm -rf $(EVAL_OUT)/sim-b && ./bin/edgeagent simulate --export $(EVAL_OUT)/sim-b --seed 2 >/dev/null
	./bin/edgeagent eval --data $(EVAL_OUT)/sim-b/data --labels $(EVAL_OUT)/sim-b/labels/combined_windows.json \
		--detector $(EVAL_DETECTOR)
