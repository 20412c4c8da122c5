# darklaunch: `make demo` runs the whole pipeline on a local stack,
# `make test` runs the unit and integration tests. Both install what they
# need first (`make deps`).
SHELL := /bin/bash
GO ?= go
MODULES := pkg services/mirror services/shadow-runner services/comparator services/reporter cmd/darkctl deploy/demo tests
SERVICES := mirror shadow-runner comparator reporter
# Debian installs clickhouse-server in /usr/sbin, outside a normal user's PATH.
export PATH := $(PATH):/usr/sbin
TEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: all deps build test test-faults test-short vet check-tree bench demo up down status clean fmt

all: build

deps:
	@scripts/deps.sh

build:
	@mkdir -p bin
	@for s in $(SERVICES); do \
	  echo "build bin/$$s"; (cd services/$$s && $(GO) build -trimpath -o ../../bin/$$s ./cmd/$$s) || exit 1; \
	done
	@echo "build bin/darkctl"
	@cd cmd/darkctl && $(GO) build -trimpath -o ../../bin/darkctl .
	@echo "build bin/demo-app bin/demo-load"
	@cd deploy/demo && $(GO) build -o ../../bin/demo-app ./cmd/demo-app && $(GO) build -o ../../bin/demo-load ./cmd/demo-load

# Build outputs (executables, files over 1 MiB outside testdata/) never
# enter git; CI fails here before running any test.
check-tree:
	@scripts/check-tree.sh

vet:
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

# Every module is tested on its own (each also builds alone with GOWORK=off).
test: deps check-tree vet
	@for m in $(MODULES); do \
	  echo "=== test $$m"; (cd $$m && $(GO) test $(TEST_FLAGS) ./...) || exit 1; \
	done

# The fault suite (tests/e2e, build tag faults): the pipeline under load
# while a worker is killed with -9, ClickHouse is down 30 s, NATS restarts,
# NATS cluster nodes are lost and Redis is down; each case checks that no
# envelope is lost or stored twice and that no client request failed, and
# logs its recovery times (-v shows them). Without -race: these cases are
# about recovery, and the race detector runs on the same code in `make test`.
FAULT_FLAGS ?= -count=1 -timeout 30m -v
test-faults: deps
	@cd tests && $(GO) vet -tags faults ./e2e/
	@cd tests && $(GO) test -tags faults $(FAULT_FLAGS) -run '^(TestFault|TestCluster)' ./e2e/

# Benchmarks compare against a baseline measured in the same run (this
# machine is shared and noisy); read the ratios, not the absolute figures.
bench: deps
	@echo "=== the tap beside a tuned Go proxy and nginx (wrk against real processes, about 4 minutes; services/mirror)"
	@cd services/mirror && $(GO) test -run '^$$' -bench 'TapOverhead' -benchtime 1x -count 1 -timeout 20m .
	@echo "=== pipeline: pairs/s end to end and CPU µs per pair of each process (tests/bench; DL_BENCH_PAIRS=20000, DL_BENCH_PROFILE=dir for CPU profiles)"
	@cd tests && $(GO) test -run '^$$' -bench Pipeline -benchtime 1x -count 1 -timeout 20m ./bench/
	@echo "=== the tap's memory with NATS down, rollback propagation, the proxy path's allocations (services/mirror)"
	@cd services/mirror && $(GO) test -run '^$$' -bench 'TapOutageMemory|RollbackPropagation' -benchtime 1x -count 1 -timeout 20m .
	@cd services/mirror && $(GO) test -run '^$$' -bench 'ProxyPath' -benchmem -count 1 .
	@echo "=== comparison engine (pkg/compare)"
	@cd pkg && $(GO) test -run '^$$' -bench . -benchmem -count 1 ./compare/
	@echo "=== reports and verdicts at 1M/10M/30M pairs, raw-row queries beside, polling (services/reporter; DL_BENCH_ROWS=1000000,10000000 for a shorter run)"
	@cd services/reporter && $(GO) test -run '^$$' -bench ReportScale -benchtime 1x -count 1 -timeout 60m .

DEMO_DURATION ?= 15s
demo: deps build
	@scripts/stack.sh up
	@DARKLAUNCH_TOKEN=$$(cat .local/stack/api-token) bin/demo-load -duration $(DEMO_DURATION)
	@echo "The stack keeps running; stop it with: make down"

up: deps build
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

status:
	@scripts/stack.sh status

clean: down
	@rm -rf bin .local/stack

fmt:
	@gofmt -l -w $$(git ls-files '*.go')
