package main

import (
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
