package scenarios

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/raftsnap/testbed/cluster"
)

// Workload is the client load of a run: Clients goroutines, each with its
// own seeded stream of operations on a small key space (so operations on
// one key overlap and the checkers have something to judge).
type Workload struct {
	Clients int
	Keys    int
	// ThinkMin/ThinkMax bound the virtual pause between a client's calls.
	ThinkMin, ThinkMax time.Duration
	// Percentages of each operation; the rest are sets.
	GetPercent, DeletePercent, CASPercent int
	// ReadModes are the read modes gets rotate through.
	ReadModes []cluster.ReadMode
	// CallTimeout bounds each call.
	CallTimeout time.Duration
	// ValueBytes pads every written value to this length (0: no padding),
	// which makes snapshots larger: several KiB instead of a few hundred
	// bytes, so that byte offsets into a snapshot stream (stream faults,
	// crash taps) land inside it.
	ValueBytes int
}

// DefaultWorkload is the load every scenario runs unless it says otherwise.
var DefaultWorkload = Workload{
	Clients:       3,
	Keys:          8,
	ThinkMin:      50 * time.Millisecond,
	ThinkMax:      250 * time.Millisecond,
	GetPercent:    30,
	DeletePercent: 10,
	CASPercent:    15,
	ReadModes:     []cluster.ReadMode{cluster.ReadLog, cluster.ReadBarrier, cluster.ReadVerifyLeader},
	CallTimeout:   3 * time.Second,
}

// run starts the clients and returns a function that stops them and waits.
// Values are unique per (client, sequence) so the checkers can tell every
// write apart.
func (wl Workload) run(w *World) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range wl.Clients {
		rng := w.Seed.Rand(fmt.Sprintf("client-%d", i))
		var c Doer = &cluster.Client{ID: i, Nodes: w.Live, History: w.History, Timeout: wl.CallTimeout}
		if w.mutation != nil && w.mutation.Client != nil {
			c = w.mutation.Client(c.(*cluster.Client), w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				think := wl.ThinkMin + time.Duration(rng.Int64N(int64(wl.ThinkMax-wl.ThinkMin)+1))
				select {
				case <-ctx.Done():
					return
				case <-time.After(think):
				}
				cmd, mode := wl.next(rng, i, seq)
				c.Do(cmd, mode)
			}
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func (wl Workload) next(rng *rand.Rand, client, seq int) (cluster.Command, cluster.ReadMode) {
	key := []byte(fmt.Sprintf("key-%02d", rng.IntN(wl.Keys)))
	value := wl.value(client, seq)
	p := rng.IntN(100)
	switch {
	case p < wl.GetPercent:
		mode := cluster.ReadLog
		if len(wl.ReadModes) > 0 {
			mode = wl.ReadModes[rng.IntN(len(wl.ReadModes))]
		}
		return cluster.Command{Op: cluster.OpGet, Key: key}, mode
	case p < wl.GetPercent+wl.DeletePercent:
		return cluster.Command{Op: cluster.OpDelete, Key: key}, cluster.ReadLog
	case p < wl.GetPercent+wl.DeletePercent+wl.CASPercent:
		// Expect a value this client may have written recently, or absence.
		if rng.IntN(3) == 0 {
			return cluster.Command{Op: cluster.OpCAS, Key: key, Value: value, ExpectAbsent: true}, cluster.ReadLog
		}
		prev := wl.value(rng.IntN(wl.Clients), max(0, seq-rng.IntN(4)-1))
		return cluster.Command{Op: cluster.OpCAS, Key: key, Value: value, Expected: prev}, cluster.ReadLog
	default:
		return cluster.Command{Op: cluster.OpSet, Key: key, Value: value}, cluster.ReadLog
	}
}

// value is the value client writes at seq: unique per (client, seq), padded
// to ValueBytes.
func (wl Workload) value(client, seq int) []byte {
	v := fmt.Appendf(nil, "c%d-%d", client, seq)
	if pad := wl.ValueBytes - len(v); pad > 0 {
		v = append(v, '/')
		for range pad - 1 {
			v = append(v, '.')
		}
	}
	return v
}
