# Pollux. `make` alone lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
GO ?= go
# Test packages run two at a time on a 2-core machine; each test clones its own database.
# -count=1: go's test cache does not see what a test reaches outside its package's imports
# (the database, the binaries e2e builds from ./cmd and ./daemons), so a cached pass can
# hide a change that breaks it.
TEST_FLAGS ?= -count=1 -timeout 20m

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_\/-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: pg/install
pg/install: ## Install the PostgreSQL server binaries if this machine has none (Debian/Ubuntu).
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || [ -n "$$POLLUX_PG_BINDIR" ]; then :; \
	else \
		echo "PostgreSQL server binaries not found: installing the postgresql package"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	fi
	@if [ "$$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then \
		echo "creating the unprivileged account 'postgres' to run the server (PostgreSQL refuses root)"; \
		useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres; \
	fi

.PHONY: haproxy/install
haproxy/install: ## Install HAProxy, keepalived and curl if missing (Debian/Ubuntu): the front-end tests run a real haproxy, keepalived's config check and its check script.
	@missing=; command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	command -v keepalived >/dev/null 2>&1 || missing="$$missing keepalived"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

.PHONY: ha/install
ha/install: pg/install ## Install pg_auto_failover (postgresql-<major>-auto-failover: pg_autoctl and its extension) if missing (Debian/Ubuntu).
	@if command -v pg_autoctl >/dev/null 2>&1 && ls /usr/share/postgresql/*/extension/pgautofailover.control >/dev/null 2>&1; then :; \
	else \
		major=$$(ls /usr/lib/postgresql | sort -n | tail -1); pkg=postgresql-$$major-auto-failover; \
		echo "pg_auto_failover not found: installing the $$pkg package (pg_autoctl and the monitor's extension)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		if ! apt-cache show $$pkg >/dev/null 2>&1; then $$SUDO apt-get update -qq; fi; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$pkg >/dev/null; \
	fi

.PHONY: test/deps
test/deps: pg/install ## Install what the tests run besides PostgreSQL, with one apt-get update when anything is missing: haproxy, keepalived, curl, pg_auto_failover, iproute2, util-linux (nsenter), prometheus (promtool), man-db (the package test reads a page) and chromium (the monitor's browser test).
	@major=$$(ls /usr/lib/postgresql | sort -n | tail -1); missing=; \
	command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	command -v keepalived >/dev/null 2>&1 || missing="$$missing keepalived"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	{ command -v pg_autoctl >/dev/null 2>&1 && ls /usr/share/postgresql/*/extension/pgautofailover.control >/dev/null 2>&1; } || missing="$$missing postgresql-$$major-auto-failover"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v nsenter >/dev/null 2>&1 || missing="$$missing util-linux"; \
	{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing="$$missing prometheus"; \
	command -v man >/dev/null 2>&1 || missing="$$missing man-db"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing the test tools:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

.PHONY: browser/install
browser/install: ## Install Debian's chromium if missing: the monitor's browser test (testsuites/e2e TestMonitorInABrowser) drives it headless.
	@if [ -x /usr/bin/chromium ]; then :; \
	else \
		echo "chromium not found: installing Debian's chromium package"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

.PHONY: monitor/screenshots
monitor/screenshots: pg/install browser/install ## Regenerate docs/monitor/*.png: the monitor's browser test against a real instance, with -update-screenshots.
	$(GO) test -count=1 -run '^TestMonitorInABrowser$$' ./testsuites/e2e/ -args -update-screenshots

.PHONY: netns/install
netns/install: ## Install iproute2 (ip) and util-linux (nsenter) if missing: the host harness (testsuites/netns) runs hosts as network namespaces.
	@if command -v ip >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1; then :; \
	else \
		echo "ip or nsenter not found: installing the iproute2 and util-linux packages"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq iproute2 util-linux >/dev/null; \
	fi

.PHONY: db
db: pg/install ## Start (idempotently) the private PostgreSQL cluster under ./var/pg and print its DSN.
	@$(GO) run ./cmd/pollux-admin db start

.PHONY: db-stop
db-stop: ## Stop the private PostgreSQL cluster.
	@$(GO) run ./cmd/pollux-admin db stop

.PHONY: generate
generate: ## Regenerate model/, model/wire/, schema/logic/*_gen.sql, docs/schema.md and docs/statuses.md from schema/pollux.yaml.
	@$(GO) run ./codegen

.PHONY: verify/generate
verify/generate: ## Fail if generated code is stale (make generate would change it).
	@$(GO) run ./codegen -check

.PHONY: verify/fmt
verify/fmt: ## Fail if gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './var/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: verify/vet
verify/vet: ## go vet every package.
	@$(GO) vet ./...

.PHONY: lint
lint: verify/fmt verify/vet ## gofmt and go vet.

.PHONY: verify
verify: lint verify/generate ## Everything checked before the tests run.

# The Prometheus configuration and alerting rules shipped in docs/prometheus: promtool (Debian's
# prometheus package) checks the configuration and the rules, and runs the rules' unit tests.
.PHONY: prometheus/install
prometheus/install: ## Install Prometheus and promtool if missing (Debian/Ubuntu): the rules' checks and the scrape test run them.
	@if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then :; \
	else \
		echo "prometheus or promtool not found: installing the prometheus package"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		if ! apt-cache show prometheus >/dev/null 2>&1; then $$SUDO apt-get update -qq; fi; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi

.PHONY: verify/prometheus
verify/prometheus: prometheus/install ## promtool check config, check rules and test rules on docs/prometheus.
	@cd docs/prometheus && promtool check config prometheus.yml && promtool check rules pollux.rules.yml \
		&& promtool test rules pollux.rules.test.yml

# The race detector runs over the framework and the daemons, where the goroutines are;
# every other package runs once, without it (the race build of the whole tree would double
# the time for little more).
MODULE = $(shell $(GO) list -m)
RACE_PKGS := ./framework/... ./daemons/...
OTHER_PKGS = $$($(GO) list ./... | grep -v -e '^$(MODULE)/framework\(/\|$$\)' -e '^$(MODULE)/daemons\(/\|$$\)')

.PHONY: test
test: pg/install test/deps verify verify/prometheus ## Every test, against a real PostgreSQL (the private cluster, or POLLUX_TEST_DATABASE_URL); the framework and daemons under the race detector.
	$(GO) test $(TEST_FLAGS) $(OTHER_PKGS)
	$(GO) test -race $(TEST_FLAGS) $(RACE_PKGS)

# Fuzzing: every `func FuzzXxx` in a _test.go file, each for FUZZTIME. `make test` (plain
# go test) already runs each target over its seeds and its committed corpus
# (<package>/testdata/fuzz/FuzzXxx/); what the fuzzer finds interesting stays in Go's cache,
# and an input that fails is written to that corpus directory: commit it with the fix.
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: pg/install ## Run each fuzz target (rhd's request decoding and path cleaning, the SQL path check through request_submit, framework/adler against hash/adler32) for FUZZTIME (default 30s) each.
	@set -e; git ls-files '*_test.go' | xargs grep -Ho '^func Fuzz[A-Za-z0-9_]*' | while IFS=: read -r file fn; do \
		name=$${fn#func }; pkg=./$$(dirname "$$file"); \
		echo "fuzz: $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -count=1 -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done

# Rounds of the long host suite (a disk server's host killed or cut off under load, each round).
HOSTS_ROUNDS ?= 6

.PHONY: test/hosts
test/hosts: pg/install netns/install ## The host harness and host suite alone, printing what they measure, then the long host suite under load (HOSTS_ROUNDS rounds, default 6; ~15 s each).
	$(GO) test $(TEST_FLAGS) ./testsuites/netns/
	HOSTS_ROUNDS=$(HOSTS_ROUNDS) $(GO) test $(TEST_FLAGS) -v -run 'TestDiskServer' ./testsuites/e2e/

.PHONY: test/short
test/short: ## The tests without the slow process-level suites.
	$(GO) test -short $(TEST_FLAGS) ./...

.PHONY: test/race
test/race: pg/install ## Every test with the race detector.
	$(GO) test -race $(TEST_FLAGS) ./...

BENCH_FLAGS ?=
.PHONY: bench
bench: pg/install ## Every benchmark on the private cluster, ending with one table of every target (BENCH_FLAGS=--record=docs/benchmarks.md keeps it).
	$(GO) run ./testsuites/bench/cmd/pollux-bench $(BENCH_FLAGS)

# The failure suite: one pg_auto_failover formation made from scratch under HA_DIR, a
# Pollux database migrated on it, then every package of FAILOVER_PKGS against it (they
# find it through POLLUX_HA_DIR and make databases of their own on it). The formation is
# stopped at the end, kept for a look at its logs (`pollux-admin ha start` runs it again).
HA_DIR ?= var/ha
FAILOVER_PKGS ?= ./testsuites/failover/...
FAILOVER_ROUNDS ?= 3

.PHONY: ha
ha: ha/install build ## Start (or create) the HA formation under ./var/ha (monitor, primary, synchronous standby) and print its DSN.
	@var/bin/pollux-admin ha start --dir $(HA_DIR)

.PHONY: failover
failover: ha/install netns/install build ## From scratch: HA formation under ./var/ha, pollux-admin migrate, then the failure suite (daemons, leaders, disk server hosts and the primary killed, paused and cut off under load) for FAILOVER_ROUNDS rounds.
	@if [ -e $(HA_DIR)/formation.json ]; then var/bin/pollux-admin ha stop --remove --dir $(HA_DIR); fi
	var/bin/pollux-admin ha start --dir $(HA_DIR)
	POLLUX_DATABASE_URL="$$(var/bin/pollux-admin ha dsn --dir $(HA_DIR))" var/bin/pollux-admin migrate
	@status=0; \
	POLLUX_HA_DIR=$(CURDIR)/$(HA_DIR) POLLUX_FAILOVER_ROUNDS=$(FAILOVER_ROUNDS) \
		$(GO) test -count=1 -v -timeout 30m $(FAILOVER_PKGS) || status=$$?; \
	var/bin/pollux-admin ha stop --dir $(HA_DIR); \
	exit $$status

.PHONY: build
build: ## Build every command and daemon into ./var/bin.
	@mkdir -p var/bin
	$(GO) build -o var/bin/ ./cmd/... ./daemons/...

# The Debian package: every program, a systemd unit and an /etc/pollux/<daemon>.env per
# daemon, man pages made from each program's --help, the example configuration
# (codegen/deb; its test installs the package into a scratch root).
.PHONY: deb
deb: build ## Build var/deb/pollux_<version>_<arch>.deb with dpkg-deb: binaries, systemd units, settings files, man pages, example configuration.
	@$(GO) run ./codegen/deb -bin var/bin -out var/deb

.PHONY: run
run: pg/install build ## Start a local instance: PostgreSQL under ./var, migrations, every daemon, two disk servers.
	@var/bin/pollux-admin local start

.PHONY: demo
demo: ## Put and get a 64 MiB file and five small ones through the running instance (make run first).
	@var/bin/pollux-admin local demo

# The certification suite against the local instance (make run): every functional case,
# the operator's too (CERTIFY_FLAGS adds flags, e.g. --run 'put/' or --junit report.xml;
# CERTIFY_STAGE_HOST for an instance started with pollux-admin local start --base-port).
# The local tokens file holds one user; the permission cases need a second, so a
# "certify" user is added to it once (rhd rereads the file when it changes).
CERTIFY_FLAGS ?=
CERTIFY_STAGE_HOST ?= 127.0.0.1:9000

.PHONY: certify
certify: build ## Run the certification suite (pollux-certify, every case with --admin) against the local instance started by make run.
	@if [ ! -f var/tokens ]; then echo "no local instance: start it with make run"; exit 2; fi
	@grep -q ' certify$$' var/tokens || echo "$$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n') certify" >> var/tokens
	var/bin/pollux-certify --stage-host $(CERTIFY_STAGE_HOST) --tokens-file var/tokens --admin \
		--database-url "$$(var/bin/pollux-admin db dsn)" --admin-bin var/bin/pollux-admin $(CERTIFY_FLAGS)

.PHONY: stop
stop: ## Stop the local instance and its PostgreSQL.
	@if [ -x var/bin/pollux-admin ]; then var/bin/pollux-admin local stop; fi
	@$(GO) run ./cmd/pollux-admin db stop

.PHONY: clean
clean: ## Stop the cluster and delete ./var (all local data).
	-@$(GO) run ./cmd/pollux-admin db stop
	-@if [ -e $(HA_DIR)/formation.json ]; then $(GO) run ./cmd/pollux-admin ha stop --dir $(HA_DIR); fi
	rm -rf var
