package repro

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// restoreBlockingFSM holds its Restore until release is closed.
type restoreBlockingFSM struct {
	entered chan struct{}
	release chan struct{}
}

func (f *restoreBlockingFSM) Apply(*raft.Log) any                 { return nil }
func (f *restoreBlockingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.EOF }
func (f *restoreBlockingFSM) Restore(rc io.ReadCloser) error {
	close(f.entered)
	<-f.release
	_, err := io.Copy(io.Discard, rc)
	return err
}

const restoreChildEnv = "REPRO_RESTORE_SHUTDOWN_CHILD"

// A Shutdown while Raft.Restore waits for the state machine: raft's
// restoreUserSnapshot hands the state machine a restoreFuture carrying the
// shutdown channel, so the future answers ErrRaftShutdown, and
// restoreUserSnapshot panics on any error of it ("If this fails we are in
// a bad state so we panic"), on raft's own goroutine: a graceful shutdown
// during a user restore ends the process.
//
// The node runs in a child process (a panic on raft's goroutine cannot be
// recovered); the test requires the child to finish without panicking.
// Against v1.8.0 it panics with "failed to restore snapshot: raft is
// already shutdown".
func TestShutdownDuringARestoreDoesNotPanic(t *testing.T) {
	if os.Getenv(restoreChildEnv) != "" {
		shutdownDuringRestore(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestShutdownDuringARestoreDoesNotPanic$", "-test.v")
	cmd.Env = append(os.Environ(), restoreChildEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if at := strings.Index(out.String(), "panic: "); at >= 0 {
		line, _, _ := strings.Cut(out.String()[at:], "\n")
		t.Fatalf("the process died when the node shut down during a user restore: %s", line)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
}

func shutdownDuringRestore(t *testing.T) {
	fsm := &restoreBlockingFSM{entered: make(chan struct{}), release: make(chan struct{})}
	r := singleNode(t, fsm)
	if err := r.Apply([]byte("x"), time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	backup := []byte("a backup")
	go func() {
		_ = r.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(len(backup))}, bytes.NewReader(backup), 0)
	}()
	<-fsm.entered
	shutdown := r.Shutdown()
	// Give raft's leader goroutine time to see the shutdown.
	time.Sleep(500 * time.Millisecond)
	close(fsm.release)
	if err := shutdown.Error(); err != nil {
		t.Fatal(err)
	}
}
