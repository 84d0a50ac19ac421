# pgwarehouse — every target does its own set-up on a fresh Debian machine.
PG15_BINDIR ?= /usr/lib/postgresql/15/bin
PG17_ROOT   ?= /var/cache/pgwarehouse/trixie-pg17
PG17_BINDIR ?= /usr/lib/postgresql/17/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -E)

.PHONY: test deps lint unit test-pg15 test-pg17 bench crd

## The whole suite: lint, unit tests, and the real-Postgres suite on both generations.
test: deps lint test-pg15 test-pg17

deps:
	@scripts/deps.sh
	@PGW_PG17_ROOT=$(PG17_ROOT) $(SUDO) scripts/pg17-root.sh >/dev/null

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## Unit tests and the real-Postgres suite on PostgreSQL 15 + pg_cron 1.4 + pg_partman 4.7.
test-pg15:
	PGW_PG_BINDIR=$(PG15_BINDIR) cargo test --lib --bins --tests

## The real-Postgres suite on PostgreSQL 17 + pg_cron 1.6 + pg_partman 5.2 (a trixie root; needs root).
test-pg17:
	PGW_PG_CHROOT=$(PG17_ROOT) PGW_PG_BINDIR=$(PG17_BINDIR) $(SUDO) env "PATH=$$PATH" cargo test --tests

## 1,000 foreign tables, 50 jobs, 20 partition sets: first apply vs floor, and the no-op apply.
bench: deps
	PGW_PG_BINDIR=$(PG15_BINDIR) cargo bench --bench converge

## Regenerate the checked-in CRD from the Rust types.
crd:
	cargo run -q -- crd > crds/datawarehousestacks.pgwarehouse.dev.yaml
