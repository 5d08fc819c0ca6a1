# Targets for people and CI. Each is one go command; see README.md.
GO        ?= go
FUZZTIME  ?= 30s
BENCHTIME ?= 5x

.PHONY: test vet fmt-check fuzz bench soak ci cover timeline-screenshot repro-raft-697 repro-raft-697-panic repro-raft-498 repro-raft-restore-before-commit repro-upstream

test:
	$(GO) test ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Each fuzz target for FUZZTIME (go test runs one fuzz target per invocation).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./snapshot
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeLog$$' -fuzztime $(FUZZTIME) ./cluster/logstore
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME) ./cluster

# Snapshot stream/install throughput and peak heap, the seed's buffered
# approach beside it, and the cost of a point-in-time view.
bench:
	$(GO) test -run '^$$' -bench 'Snapshot|SeedBuffered|View' -benchtime $(BENCHTIME) -timeout 60m ./snapshot

# The scheduled deep run: every scenario on each engine over SEEDS; a seed
# whose failure a known upstream bug's fingerprint explains passes, labelled. A CI matrix splits it with SHARD=i/n
# (each job takes every n-th seed), e.g. make soak SEEDS=1..20000 SHARD=3/16.
SEEDS  ?= 1..2000
SHARD  ?= 0/1
JOBS   ?= 2
SCENARIOS = snapshot-install snapshot-crash partition-heal leader-churn membership mixed-engines swarm

soak:
	$(GO) build -o bin/simrun ./cmd/simrun
	set -e; for s in $(SCENARIOS); do for e in pebble bbolt; do \
		bin/simrun --scenario=$$s --engine=$$e --seeds=$(SEEDS) --shard=$(SHARD) --jobs=$(JOBS) --exclude-known; \
	done; done

ci:
	bash .ci/run

# Coverage of the code under test (hashicorp/raft, cluster/..., snapshot/...)
# over the CI sweep: every scenario on each engine, seeds COVER_SEEDS, known
# upstream seeds excluded; each run's coverage in COVERDIR/runs, then the
# table of snapshot-path functions, their first-reaching seeds and the
# totals (simrun --cover-report). The main package must be in -coverpkg,
# or a cover-built binary writes no coverage at all.
COVERDIR    ?= cover
COVER_SEEDS ?= 1..40
COVERPKG     = github.com/hashicorp/raft,./cluster/...,./snapshot/...,./cmd/simrun

cover:
	$(GO) build -cover -covermode=atomic -coverpkg=$(COVERPKG) -o bin/simrun-cover ./cmd/simrun
	rm -rf $(COVERDIR) && mkdir -p $(COVERDIR)/process
	set -e; for s in $(SCENARIOS); do for e in pebble bbolt; do \
		GOCOVERDIR=$(COVERDIR)/process bin/simrun-cover --scenario=$$s --engine=$$e --seeds=$(COVER_SEEDS) --jobs=$(JOBS) --exclude-known --cover=$(COVERDIR)/ >/dev/null; \
	done; done
	bin/simrun-cover --cover-report=$(COVERDIR)

# README's picture: the timeline of a real failing seed (the canary
# install-keeps-stale-keys, seed 1) as headless Chromium draws it in the
# seed's HTML report. Needs chromium on PATH.
timeline-screenshot:
	SIMRUN_REQUIRE_BROWSER=1 SIMRUN_SCREENSHOT=$(CURDIR)/docs/timeline.png $(GO) test -count=1 -run '^TestSeedReportRendersInABrowser$$' ./cmd/simrun

# Known upstream bugs, each replayed in one command from its minimal saved
# schedule (testdata/repro): prints the run and the bug's fingerprint, and
# fails unless simrun classifies the run as that bug.
repro-raft-697:
	@testdata/repro/replay.sh hashicorp/raft#697 --seed=74 --scenario=snapshot-install --engine=pebble --schedule=testdata/repro/raft-697.json --no-pipelining --snapshot-store=copy

repro-raft-697-panic:
	@testdata/repro/replay.sh hashicorp/raft#697/panic --seed=100 --scenario=partition-heal --engine=pebble --schedule=testdata/repro/raft-697-panic.json --no-pipelining --snapshot-store=copy

# The future leak's first saved schedule (swarm 355) stopped reproducing when
# Pebble engines began to run unsynced under the zero-copy store; this one is
# swarm 4 on the default (zero-copy) store, shrunk with --shrink.
repro-raft-498:
	@testdata/repro/replay.sh hashicorp/raft#498 --seed=4 --scenario=swarm --engine=pebble --schedule=testdata/repro/raft-498.json --snapshot-store=zero-copy

# Raft.Restore's documented hazard (swarm 17 on Pebble), shrunk with --shrink
# to its one fault: a voter added while the restore is not yet committed.
repro-raft-restore-before-commit:
	@testdata/repro/replay.sh hashicorp/raft/Restore-before-commit --seed=17 --scenario=swarm --engine=pebble --schedule=testdata/repro/raft-restore-before-commit.json

# The standalone reproductions against unpatched hashicorp/raft v1.8.0
# (repro/, a module of its own): each bug's test fails while the bug is
# there, so this target fails; the control tests pass.
repro-upstream:
	cd repro && $(GO) test -count=1 -v ./...
