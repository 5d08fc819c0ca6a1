# Targets for people and CI. Each is one go command; see README.md.
GO        ?= go
FUZZTIME  ?= 30s
BENCHTIME ?= 5x

.PHONY: test vet fmt-check fuzz bench ci

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

ci:
	bash .ci/run
