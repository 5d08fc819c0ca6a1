package repro

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// blockingFSM holds its first Apply until release is closed, so that
// committed entries queue up for the state machine goroutine.
type blockingFSM struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (f *blockingFSM) Apply(*raft.Log) any {
	f.once.Do(func() {
		close(f.entered)
		<-f.release
	})
	return nil
}

func (f *blockingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.EOF }
func (f *blockingFSM) Restore(io.ReadCloser) error         { return nil }

// hashicorp/raft#498: committed entries go to the state machine goroutine,
// with their futures, through the buffered channel fsmMutateCh; on
// shutdown runFSM returns without answering what is still queued, and an
// ApplyFuture has no shutdown channel, so its Error() blocks forever.
//
// The test applies entries to a single-node cluster while its state
// machine is busy, shuts the node down, lets the state machine go, and
// requires every future to be answered (with a result or
// ErrRaftShutdown). Against v1.8.0 some never are.
func TestApplyFuturesAreAnsweredWhenTheNodeShutsDown(t *testing.T) {
	fsm := &blockingFSM{entered: make(chan struct{}), release: make(chan struct{})}
	r := singleNode(t, fsm)

	var mu sync.Mutex
	var futures []raft.ApplyFuture
	stop := make(chan struct{})
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f := r.Apply([]byte{byte(i)}, 50*time.Millisecond)
			mu.Lock()
			futures = append(futures, f)
			mu.Unlock()
		}
	}()
	<-fsm.entered
	// Let commits pile up behind the busy state machine.
	time.Sleep(300 * time.Millisecond)
	shutdown := r.Shutdown()
	close(stop)
	close(fsm.release)
	if err := shutdown.Error(); err != nil {
		t.Fatal(err)
	}
	<-submitted

	mu.Lock()
	defer mu.Unlock()
	unanswered := 0
	expired := make(chan struct{})
	time.AfterFunc(5*time.Second, func() { close(expired) })
	for _, f := range futures {
		done := make(chan struct{})
		go func() { f.Error(); close(done) }()
		select {
		case <-done:
		case <-expired:
			unanswered++
		}
	}
	if unanswered > 0 {
		t.Fatalf("%d of %d Apply futures were never answered after Shutdown (hashicorp/raft#498): "+
			"their callers would wait forever", unanswered, len(futures))
	}
}

// singleNode starts a bootstrapped one-node cluster and waits until it leads.
func singleNode(t *testing.T, fsm raft.FSM) *raft.Raft {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.LogOutput = io.Discard
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport("n1")
	boot := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}
	if err := raft.BootstrapCluster(conf, store, store, snaps, trans, boot); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.LeaderCh():
	case <-time.After(5 * time.Second):
		t.Fatal("no leader")
	}
	return r
}
