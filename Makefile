# ecs-lifecycle. Every target uses a pinned Deno; when `deno` on PATH is missing or not 2.9.x, the
# first target installs Deno from the npm registry into .tools/ (nothing else is downloaded).
DENO_VERSION := 2.9.6
DENO_MINOR   := 2.9
TOOLS        := .tools
PREFIX       ?= /usr/local
ROLE         ?= nlb-sidecar
VERSION      := $(shell sed -n 's/^  "version": "\(.*\)",/\1/p' deno.json)

SYSTEM_DENO := $(shell command -v deno 2>/dev/null)
SYSTEM_OK   := $(if $(SYSTEM_DENO),$(findstring deno $(DENO_MINOR).,$(shell deno --version 2>/dev/null)))
DENO        := $(if $(SYSTEM_OK),$(SYSTEM_DENO),$(CURDIR)/$(TOOLS)/bin/deno)
DENO_DEP    := $(if $(SYSTEM_OK),,$(TOOLS)/bin/deno)
# `deno task` runs the tasks' own `deno ...` words through PATH: put the pinned binary first.
export PATH := $(dir $(DENO)):$(PATH)

.PHONY: all demo test unit check lint fmt fmt-check doc-lint bench docs bundle compile image install clean deno

all: test

deno: $(DENO_DEP)
	@$(DENO) --version | head -n 1

$(TOOLS)/bin/deno:
	npm install --prefix $(TOOLS) --no-save --no-audit --no-fund --no-package-lock deno@$(DENO_VERSION)
	mkdir -p $(TOOLS)/bin
	for bin in $(TOOLS)/node_modules/@deno/linux-*/deno $(TOOLS)/node_modules/deno/deno; do \
	  if [ -x "$$bin" ] && "$$bin" --version >/dev/null 2>&1; then ln -sf "$(CURDIR)/$$bin" $@; break; fi; \
	done
	@test -x $@ || { echo "could not find a working deno binary under $(TOOLS)/node_modules" >&2; exit 1; }

demo: bundle
	$(DENO) task demo

test: $(DENO_DEP) check lint fmt-check doc-lint unit

# Roles run from their bundles in dist/bundle/ (tools/bundle.ts): rebuilt here when any input changed, and a
# process started from a stale bundle fails loudly (sim/role_process.ts), so tests never pass on old code.
bundle: $(DENO_DEP)
	$(DENO) task bundle

unit: bundle
	$(DENO) task test

check: $(DENO_DEP)
	$(DENO) task check

lint: $(DENO_DEP)
	$(DENO) lint

fmt: $(DENO_DEP)
	$(DENO) fmt

fmt-check: $(DENO_DEP)
	$(DENO) fmt --check

# The library surface documents itself: every export of mod.ts has JSDoc, and every example in it type-checks.
doc-lint: $(DENO_DEP)
	$(DENO) doc --lint mod.ts
	$(DENO) check --doc-only mod.ts lib/*.ts

bench: bundle
	$(DENO) task bench

docs: $(DENO_DEP)
	$(DENO) task docs

# Needs Deno's denort runtime: downloaded by deno itself, or set DENORT_BIN=/path/to/denort.
compile: bundle
	$(DENO) task compile

image:
	docker build -f Dockerfile.distroless --build-arg ROLE=$(ROLE) -t ecs-lifecycle/$(ROLE):$(VERSION) .

# Host install of the network sentry: one binary and its systemd unit. Build first with `make compile`.
# The binary is this host's architecture (uname -m), or `make install TARGET=aarch64-unknown-linux-gnu`.
install:
	@target="$(TARGET)"; \
	if [ -z "$$target" ]; then \
	  case "$$(uname -m)" in \
	    x86_64|amd64) target=x86_64-unknown-linux-gnu ;; \
	    aarch64|arm64) target=aarch64-unknown-linux-gnu ;; \
	    *) echo "no build target for $$(uname -m): set TARGET=x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu" >&2; exit 1 ;; \
	  esac; \
	fi; \
	echo "install dist/$$target/ecs-network-sentry -> $(DESTDIR)$(PREFIX)/bin/ecs-network-sentry"; \
	install -D -m 0755 "dist/$$target/ecs-network-sentry" "$(DESTDIR)$(PREFIX)/bin/ecs-network-sentry"
	install -d -m 0755 $(DESTDIR)/etc/systemd/system
	sed 's#/usr/local/bin/#$(PREFIX)/bin/#' deploy/ecs-network-sentry.service > $(DESTDIR)/etc/systemd/system/ecs-network-sentry.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/ecs-network-sentry.service

clean:
	rm -rf dist $(TOOLS)
