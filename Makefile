# pgwarehouse — every target does its own set-up on a fresh Debian machine.
PG15_BINDIR ?= /usr/lib/postgresql/15/bin
PG17_ROOT   ?= /var/cache/pgwarehouse/trixie-pg17
PG17_BINDIR ?= /usr/lib/postgresql/17/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -E)
# helm and kubectl land here when the machine has none (scripts/tools.sh).
export PATH := $(CURDIR)/.cache/tools:$(PATH)
# pgrx's configuration belongs to the clone (scripts/extensions.sh writes it), never ~/.pgrx.
export PGRX_HOME := $(CURDIR)/target/pgrx

.PHONY: demo demo-down test test-e2e extensions extensions-pg17 citus citus-pg17 deps deps-tools deps-pg15 deps-pg17 lint test-pg15 test-pg17 bench crd

# `make demo PORT=6543` runs the local server on that port; without it: the last one used, else
# 5433, else any free port.
PORT ?=
QUICKSTART = local up -f stack-templates/examples/quickstart.yaml $(if $(PORT),--port $(PORT)) \
	--secrets-dir stack-templates/examples/secrets \
	--seed controlplane=stack-templates/examples/controlplane-seed.sql
QUICKSTART_STATE = .pgwarehouse/quickstart/pgwarehouse-local.json

## The main job on the embedded default: a local Postgres running the quickstart warehouse.
demo: deps-pg15
	cargo run -q -- $(QUICKSTART)
	@echo; echo "The clusters refresh, run now (pg_cron runs it every 5 minutes):"
	@cargo run -q -- local refresh -f stack-templates/examples/quickstart.yaml
	@echo; echo "Instances per organization, read through postgres_fdw into ingested_clusters:"
	@PGPASSWORD=$$(cat .pgwarehouse/quickstart/superuser-password) psql -h 127.0.0.1 -U postgres -d warehouse \
	  -p $$(sed -n 's/.*"port": *\([0-9]*\).*/\1/p' $(QUICKSTART_STATE)) \
	  -c "SELECT organization_name, count(*) AS instances, sum((desired_spec->>'cpu')::int) AS cpus FROM ingested_clusters GROUP BY 1 ORDER BY 2 DESC"

## Stop the demo's server (its data stays; `make demo` starts it again).
demo-down:
	cargo run -q -- local down -f stack-templates/examples/quickstart.yaml

## The whole suite: lint, unit tests, and the real-Postgres suite on both generations.
test: deps extensions extensions-pg17 citus citus-pg17 lint test-pg15 test-pg17 test-e2e

## Our Postgres extensions (extensions/: prometheus_fdw, clerk_fdw), built with pgrx and
## installed into the host's PostgreSQL 15; extensions-pg17 into the PostgreSQL 17 root.
extensions: deps-pg15
	@scripts/extensions.sh pg15

extensions-pg17: deps-pg17
	@PGW_PG17_ROOT=$(PG17_ROOT) scripts/extensions.sh pg17

## Citus from its vendored source (third_party/citus, v13.2.2): citus and citus_columnar for the
## host's PostgreSQL 15; citus-pg17 for the PostgreSQL 17 root. Incremental.
citus: deps-pg15
	@scripts/citus.sh pg15

citus-pg17: extensions-pg17
	@scripts/citus.sh pg17

deps: deps-pg15 deps-pg17 deps-tools

deps-tools:
	@scripts/tools.sh
	@scripts/lint-tools.sh

deps-pg15:
	@scripts/deps.sh

deps-pg17: deps-pg15
	@PGW_PG17_ROOT=$(PG17_ROOT) $(SUDO) scripts/pg17-root.sh >/dev/null

## Rust formatting and clippy; the GitHub workflows (actionlint) and both Dockerfiles (hadolint).
lint: deps-tools extensions
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo fmt --manifest-path extensions/Cargo.toml --all -- --check
	cargo clippy --manifest-path extensions/Cargo.toml --all-targets -- -D warnings
	.cache/lint/bin/actionlint -no-color .github/workflows/*.yml
	.cache/lint/bin/hadolint --no-color --failure-threshold error Dockerfile stack-templates/image/Dockerfile

## Unit tests and the real-Postgres suite on PostgreSQL 15 + pg_cron 1.4 + pg_partman 4.7.
test-pg15:
	cargo test --manifest-path extensions/Cargo.toml -p http_agent -p prometheus_query -p clerk_api
	PGW_PG_BINDIR=$(PG15_BINDIR) cargo test -p pgwarehouse --lib --bins --tests

## The real-Postgres suite on PostgreSQL 17 + pg_cron 1.6 + pg_partman 5.2 (a trixie root; needs root),
## our FDWs and pgBackRest included. (The pod's agent runs the host's programs as their owner, so
## its tests run on the host's generation only.)
test-pg17:
	PGW_PG_CHROOT=$(PG17_ROOT) PGW_PG_BINDIR=$(PG17_BINDIR) $(SUDO) env "PATH=$$PATH" cargo test -p pgwarehouse --test engine --test cli --test prometheus_fdw --test clerk_fdw --test refresh --test columnar --test distributed --test ha --test backup --test local_upgrade \
	  -- --skip agent_

## The end-to-end scenarios: the quickstart under `local up` (and, with KUBECONFIG, a cluster).
test-e2e:
	PGW_PG_BINDIR=$(PG15_BINDIR) cargo test -p pgwarehouse-e2e --test local --test customer_warehouse -- --nocapture
	@if [ -n "$$KUBECONFIG" ]; then cargo test -p pgwarehouse-e2e --test cluster -- --nocapture; \
	else echo "SKIPPED the real-cluster e2e (e2e/tests/cluster.rs): KUBECONFIG is not set; see README"; fi

## 1,000 foreign tables, 50 jobs, 20 partition sets: first apply vs floor, and the no-op apply;
## the FDWs and refreshes against their floors; backup and restore of 1 GB against tar.
bench: deps
	PGW_PG_BINDIR=$(PG15_BINDIR) cargo bench --bench converge --bench fdw --bench refresh --bench backup --bench citus --bench ha

## Regenerate every checked-in copy of the CRD and the RBAC rules from the Rust types.
crd:
	cargo run -q -- crd > crds/datawarehousestacks.pgwarehouse.dev.yaml
	cp crds/datawarehousestacks.pgwarehouse.dev.yaml charts/pgwarehouse-operator/crds/
	cp crds/datawarehousestacks.pgwarehouse.dev.yaml config/crd/
	cargo run -q -- rbac --name pgwarehouse-operator > charts/pgwarehouse-operator/files/clusterrole.yaml
	cargo run -q -- rbac --name pgwarehouse > config/rbac/clusterrole.yaml
