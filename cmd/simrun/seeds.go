package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// rangeRE is a seed range, A..B inclusive.
var rangeRE = regexp.MustCompile(`^(\d+)\.\.(\d+)$`)

func parseRange(s string) ([]uint64, error) {
	m := rangeRE.FindStringSubmatch(s)
	if m == nil {
		return nil, usagef("--seeds=%q: want A..B, for example 1..100", s)
	}
	a, errA := strconv.ParseUint(m[1], 10, 64)
	b, errB := strconv.ParseUint(m[2], 10, 64)
	if errA != nil || errB != nil || a > b {
		return nil, usagef("--seeds=%q: want A..B with A <= B", s)
	}
	if b-a >= 1_000_000 {
		return nil, usagef("--seeds=%q: at most 1000000 seeds per invocation (split it with --shard)", s)
	}
	var out []uint64
	for x := a; ; x++ {
		out = append(out, x)
		if x == b {
			break
		}
	}
	return out, nil
}

func parseShard(s string) (int, int, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 2 {
		return 0, 0, usagef("--shard=%q: want i/n, for example 0/4", s)
	}
	i, errI := strconv.Atoi(parts[0])
	n, errN := strconv.Atoi(parts[1])
	if errI != nil || errN != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, usagef("--shard=%q: want i/n with 0 <= i < n", s)
	}
	return i, n, nil
}

// autoShard reads the shard from the batch system running simrun: the
// index from JOB_COMPLETION_INDEX (set on every pod of a Kubernetes
// Indexed Job) or SHARD_INDEX (set it from a CI matrix, e.g. GitHub
// Actions' strategy.job-index), the count from --shard-count or
// SHARD_COUNT. It returns "i/n".
func autoShard(count int, getenv func(string) string) (string, error) {
	k8s, generic := getenv("JOB_COMPLETION_INDEX"), getenv("SHARD_INDEX")
	index := k8s
	switch {
	case k8s != "" && generic != "" && k8s != generic:
		return "", usagef("--shard=auto: JOB_COMPLETION_INDEX=%s and SHARD_INDEX=%s disagree", k8s, generic)
	case k8s == "" && generic == "":
		return "", usagef("--shard=auto: neither JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor SHARD_INDEX is set")
	case k8s == "":
		index = generic
	}
	if count == 0 {
		env := getenv("SHARD_COUNT")
		if env == "" {
			return "", usagef("--shard=auto: give the number of shards with --shard-count or SHARD_COUNT")
		}
		n, err := strconv.Atoi(env)
		if err != nil || n < 1 {
			return "", usagef("--shard=auto: SHARD_COUNT=%q is not a positive number", env)
		}
		count = n
	}
	i, err := strconv.Atoi(index)
	if err != nil || i < 0 || i >= count {
		return "", usagef("--shard=auto: shard index %q is not in 0..%d", index, count-1)
	}
	return fmt.Sprintf("%d/%d", i, count), nil
}
