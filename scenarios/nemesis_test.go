package scenarios

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftsnap/testbed/cluster"
)

// heldFuture is a raft.Future answered when its channel closes.
type heldFuture struct {
	answer chan struct{}
	err    error
}

func (f *heldFuture) Error() error {
	<-f.answer
	return f.err
}

// The nemesis waits for a membership change at most membershipWait of
// virtual time: a future raft never answers (a change that cannot commit
// while faults the nemesis would heal later are on) returns errUnanswered
// at the bound instead of holding the schedule for ever, and an answered
// one returns its own result at once.
func TestMembershipWaitIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &cluster.Node{}
		never := &heldFuture{answer: make(chan struct{})}
		start := time.Now()
		if err := awaitWithin(n, never, membershipWait); !errors.Is(err, errUnanswered) {
			t.Errorf("unanswered future: %v, want errUnanswered", err)
		}
		if waited := time.Since(start); waited != membershipWait {
			t.Errorf("waited %v for an unanswered future, want %v", waited, membershipWait)
		}
		refused := &heldFuture{answer: make(chan struct{}), err: errors.New("refused")}
		close(refused.answer)
		start = time.Now()
		if err := awaitWithin(n, refused, membershipWait); err != refused.err || time.Since(start) != 0 {
			t.Errorf("answered future: %v after %v, want its own error at once", err, time.Since(start))
		}
		close(never.answer) // the waiting goroutine ends with the test
		synctest.Wait()
	})
}
