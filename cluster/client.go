package cluster

import (
	"bytes"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Outcome is how a client call ended, as far as the client can know.
type Outcome uint8

const (
	// OutcomeOK: the operation took effect and Result is its result.
	OutcomeOK Outcome = iota + 1
	// OutcomeFail: the operation certainly did not take effect.
	OutcomeFail
	// OutcomeUnknown: the call timed out or leadership was lost; the
	// operation may or may not have taken effect, now or later.
	OutcomeUnknown
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeFail:
		return "fail"
	case OutcomeUnknown:
		return "unknown"
	}
	return "invalid"
}

// ReadMode is how a client read is served.
type ReadMode uint8

const (
	// ReadLog sends the read through the raft log, like a write.
	ReadLog ReadMode = iota
	// ReadBarrier waits for a raft Barrier on the leader, then reads the
	// leader's state machine.
	ReadBarrier
	// ReadVerifyLeader confirms leadership with VerifyLeader, then reads
	// the leader's state machine. The state machine may lag behind the
	// commit index, so this mode is not expected to be linearizable.
	ReadVerifyLeader
)

func (m ReadMode) String() string {
	return [...]string{"log", "barrier", "verify-leader"}[m]
}

// Call is one client operation as the history records it. Invoke and
// Return are virtual times since the history began.
type Call struct {
	Client  int
	Command Command
	Mode    ReadMode // for gets
	Invoke  time.Duration
	Return  time.Duration
	Outcome Outcome
	Result  Result
	Node    raft.ServerID // the node that served it, if any
	Err     string        // why it failed or is unknown
	// Reset marks a write that stands for a key's part of a user restore
	// (raft's Restore of a backup sets every key to the backup's value):
	// it took effect within [Invoke, Return] if its outcome is OK, but
	// reports no previous value, so Result is not to be checked.
	Reset bool
}

// History records client calls for the checkers. It is safe for
// concurrent use.
type History struct {
	start time.Time
	mu    sync.Mutex
	calls []Call
}

// NewHistory starts a history; times are measured from now (virtual time
// inside a synctest bubble).
func NewHistory() *History { return &History{start: time.Now()} }

// Since is the virtual time since the history began: what Invoke and
// Return are measured in.
func (h *History) Since() time.Duration { return time.Since(h.start) }

// Record adds a call made by a client other than Client (a wrapper that
// issues its own calls records them here).
func (h *History) Record(c Call) { h.add(c) }

func (h *History) add(c Call) {
	h.mu.Lock()
	h.calls = append(h.calls, c)
	h.mu.Unlock()
}

// Calls returns a copy of the recorded calls, in the order they returned.
func (h *History) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Call(nil), h.calls...)
}

// Client issues operations to whichever node leads, with a timeout per call
// and retries only where a retry cannot apply an operation twice.
type Client struct {
	ID int
	// Nodes returns the live nodes in a fixed order; the client asks each
	// whether it leads.
	Nodes   func() []*Node
	History *History
	// Timeout bounds each call, retries included; zero means 5 s.
	Timeout time.Duration
	// RetryDelay is the wait before trying again when no node leads or
	// the chosen one was not the leader; zero means 100 ms.
	RetryDelay time.Duration
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 5 * time.Second
}

func (c *Client) retryDelay() time.Duration {
	if c.RetryDelay > 0 {
		return c.RetryDelay
	}
	return 100 * time.Millisecond
}

// Do runs one command (and, for OpGet, the given read mode), records it and
// returns the call as recorded.
//
// Its deadlines read time.Now: clients run inside the run's synctest
// bubble, where that is the virtual clock, so they follow the seed.
func (c *Client) Do(cmd Command, mode ReadMode) Call {
	call := Call{Client: c.ID, Command: cmd, Mode: mode, Invoke: c.History.Since()}
	deadline := time.Now().Add(c.timeout())
	for {
		n := c.leader()
		if n == nil {
			if !time.Now().Add(c.retryDelay()).Before(deadline) {
				call.Outcome, call.Err = OutcomeFail, "no leader"
				break
			}
			time.Sleep(c.retryDelay())
			continue
		}
		call.Node = n.ID
		outcome, res, err := c.try(n, cmd, mode, time.Until(deadline))
		call.Outcome, call.Result = outcome, res
		if err != nil {
			call.Err = err.Error()
		}
		// Retry only a call that certainly did nothing, while time is left.
		if outcome == OutcomeFail && time.Now().Add(c.retryDelay()).Before(deadline) {
			time.Sleep(c.retryDelay())
			continue
		}
		break
	}
	call.Return = c.History.Since()
	c.History.add(call)
	return call
}

// leader is the first live node that believes it leads.
func (c *Client) leader() *Node {
	for _, n := range c.Nodes() {
		if n.Raft.State() == raft.Leader {
			return n
		}
	}
	return nil
}

// try makes one attempt on node n within d.
func (c *Client) try(n *Node, cmd Command, mode ReadMode, d time.Duration) (Outcome, Result, error) {
	if cmd.Op == OpGet && mode != ReadLog {
		return c.localRead(n, cmd, mode, d)
	}
	f := n.Raft.Apply(cmd.Encode(), d)
	errc := make(chan error, 1)
	go func() { errc <- n.Await(f) }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-errc:
		if err != nil {
			return classify(err), Result{}, err
		}
		switch r := f.Response().(type) {
		case Result:
			return OutcomeOK, r, nil
		case error:
			// The entry is in the log but the state machine refused it
			// (it stopped after an engine error): whether the engine
			// holds it is unknown.
			return OutcomeUnknown, Result{}, r
		default:
			return OutcomeUnknown, Result{}, errors.New("unexpected response")
		}
	case <-timer.C:
		return OutcomeUnknown, Result{}, errors.New("client timeout")
	}
}

func (c *Client) localRead(n *Node, cmd Command, mode ReadMode, d time.Duration) (Outcome, Result, error) {
	var f raft.Future
	if mode == ReadBarrier {
		f = n.Raft.Barrier(d)
	} else {
		f = n.Raft.VerifyLeader()
	}
	errc := make(chan error, 1)
	go func() { errc <- n.Await(f) }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-errc:
		if err != nil {
			// A read that did not happen changed nothing.
			return OutcomeFail, Result{}, err
		}
	case <-timer.C:
		return OutcomeFail, Result{}, errors.New("client timeout")
	}
	v, found, err := n.FSM.Get(cmd.Key)
	if err != nil {
		return OutcomeFail, Result{}, err
	}
	return OutcomeOK, Result{Value: v, Found: found, Index: n.FSM.Applied().Index}, nil
}

// classify maps raft's errors to what the client can conclude.
func classify(err error) Outcome {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return OutcomeFail // refused before the entry entered the log
	default:
		return OutcomeUnknown // e.g. ErrLeadershipLost, ErrRaftShutdown
	}
}

// Equal reports whether two commands are identical.
func (c Command) Equal(o Command) bool {
	return c.Op == o.Op && bytes.Equal(c.Key, o.Key) && bytes.Equal(c.Value, o.Value) &&
		bytes.Equal(c.Expected, o.Expected) && c.ExpectAbsent == o.ExpectAbsent
}
