# mailcluster: `make run` starts a standalone node, `make test` runs every test.
# Everything needed is fetched by the targets themselves (Go modules,
# staticcheck, the Consul agent built from tools/consul).

GO          ?= go
BIN         := $(CURDIR)/bin
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
CONSUL      := $(shell command -v consul 2>/dev/null || echo $(BIN)/consul)
RUN_ARGS    ?=
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends
TEST_FLAGS  ?= -race -count=1 -timeout 14m

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/mailcluster
	$(GO) build -o $(BIN)/mailcluster ./cmd/mailcluster

.PHONY: run
run: build ## start a standalone node with its data in ./data (Ctrl-C stops it)
	$(BIN)/mailcluster serve --data-dir ./data $(RUN_ARGS)

.PHONY: test
test: consul test-deps ## run every test, unit and integration (with a real Consul), race detector on
	$(GO) test $(TEST_FLAGS) $$($(GO) list ./... | grep -v /integration)
	MAILCLUSTER_CONSUL_BIN=$(CONSUL) $(GO) test $(TEST_FLAGS) ./integration/

.PHONY: test-deps
test-deps: ## install the Debian packages the tests drive (swaks, openssl, haproxy, tzdata, python3 for its imaplib, curl, isync's mbsync)
	@command -v swaks >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 && command -v haproxy >/dev/null 2>&1 && \
		command -v python3 >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 && command -v mbsync >/dev/null 2>&1 && \
		[ -e /usr/share/zoneinfo/Asia/Tokyo ] || \
		{ $(SUDO) apt-get update -qq && $(APT_INSTALL) swaks openssl haproxy tzdata python3 curl isync; }

# bench-deps installs the peers the benchmarks start privately (their own
# config, 127.0.0.1 and a random port, stopped after the run): postfix for
# smtp-sink and dovecot-imapd. Both packages would otherwise start a system
# Postfix or Dovecot listening on every interface. So, while apt-get runs, a
# /usr/sbin/policy-rc.d that exits 101 forbids starting services (put there
# only if none exists, and removed afterwards even when the install fails);
# and a dovecot or postfix master process that runs after the install but
# did not before (a system that ignores policy-rc.d) is stopped by its pid.
POLICY_RC := /usr/sbin/policy-rc.d

.PHONY: bench-deps
bench-deps: ## install the Debian packages the benchmarks compare with (postfix's smtp-sink, dovecot-imapd), starting no system service
	@pkgs=""; \
	command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || pkgs="$$pkgs postfix"; \
	[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || pkgs="$$pkgs dovecot-imapd"; \
	[ -n "$$pkgs" ] || exit 0; \
	masters() { for p in $$(pidof dovecot master 2>/dev/null); do \
		case "$$($(SUDO) readlink /proc/$$p/exe 2>/dev/null)" in /usr/sbin/dovecot|/usr/lib/postfix/sbin/master) echo $$p;; esac; done; }; \
	before=" $$(masters | tr '\n' ' ')"; own=""; \
	trap '[ -z "$$own" ] || $(SUDO) rm -f $(POLICY_RC)' EXIT; trap 'exit 1' HUP INT TERM; \
	if [ ! -e $(POLICY_RC) ]; then \
		own=1; printf '#!/bin/sh\n# make bench-deps: start no service during its install\nexit 101\n' | $(SUDO) tee $(POLICY_RC) >/dev/null && $(SUDO) chmod 755 $(POLICY_RC) || exit 1; \
	fi; \
	$(SUDO) apt-get update -qq && $(APT_INSTALL) $$pkgs; rc=$$?; \
	for p in $$(masters); do case "$$before" in *" $$p "*) continue;; esac; \
		echo "bench-deps: stopping $$($(SUDO) readlink /proc/$$p/exe) (pid $$p), started by the package"; $(SUDO) kill $$p; done; \
	exit $$rc

.PHONY: bench
bench: consul bench-deps ## measure every performance figure against its baseline; table on stdout, bench/results.json
	MAILCLUSTER_BENCH=1 MAILCLUSTER_CONSUL_BIN=$(CONSUL) $(GO) test -run '^TestBench$$' -v -count=1 -timeout 75m ./bench/

.PHONY: lint
lint: $(STATICCHECK) ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l . | grep -v '^tools/' || true); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Fuzz targets as package:FuzzName; `make fuzz FUZZTIME=2m` runs each longer.
FUZZTIME     ?= 20s
FUZZ_TARGETS := .:FuzzParseIni .:FuzzSettingRoundTrip .:FuzzSplitAddress ./xmlapi:FuzzRequest ./xmlapi:FuzzWriteAnswer \
                ./mailsvc:FuzzSplitAny ./mailsvc:FuzzSMTPRcpt

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (20s) each; a crash is saved under the package's testdata/fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# Mutation testing with gremlins: each mutant of the listed packages runs
# their tests; a mutant that lives is a promise no test would miss breaking.
GREMLINS         := $(BIN)/gremlins
GREMLINS_VERSION := v0.6.0
MUTATE_PKGS      ?= . ./screening ./service ./mailsvc ./cluster

# "." is the root package alone: gremlins walks a directory tree, so the
# files below it are excluded (-E '/').
.PHONY: mutate
mutate: $(GREMLINS) consul ## mutation testing (gremlins) of MUTATE_PKGS; slow: tens of minutes for all
	@set -e; for p in $(MUTATE_PKGS); do \
		echo "== $$p"; \
		if [ "$$p" = . ]; then excl="-E /"; else excl=""; fi; \
		MAILCLUSTER_CONSUL_BIN=$(CONSUL) $(GREMLINS) unleash --workers 1 --timeout-coefficient 5 -S lt $$excl $$p; \
	done

$(GREMLINS):
	GOBIN=$(BIN) $(GO) install github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION)

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: consul
consul: ## build the Consul agent into bin/consul (unless consul is on PATH)
	@if command -v consul >/dev/null 2>&1; then echo "using $$(command -v consul)"; \
	else cd tools/consul && $(GO) build -o $(BIN)/consul . && echo "Consul agent: $(BIN)/consul"; fi

.PHONY: demo
demo: build consul ## Consul dev agent + three nodes on loopback; Ctrl-C stops all
	CONSUL=$(CONSUL) ./scripts/demo.sh

.PHONY: clean
clean: ## remove build output (not ./data)
	rm -rf $(BIN)
