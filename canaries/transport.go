package canaries

import (
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/sim"
)

// ackLostTransport is a node's endpoint whose AppendEntries pipeline fills
// in each response as a success before sending (the common case, to save
// an allocation on the decode path) and leaves it so when the request
// fails: raft's pipeline decoder then counts an AppendEntries that was
// lost, cut off by a partition or timed out as appended by the follower.
// Only pipelined replication goes through it; one-at-a-time AppendEntries
// return their error as they should.
type ackLostTransport struct {
	*sim.Transport
}

func (t ackLostTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return ackLostPipeline{p}, nil
}

type ackLostPipeline struct {
	raft.AppendPipeline
}

func (p ackLostPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	last := args.PrevLogEntry
	if n := len(args.Entries); n > 0 {
		last = args.Entries[n-1].Index
	}
	*resp = raft.AppendEntriesResponse{RPCHeader: resp.RPCHeader, Term: args.Term, LastLog: last, Success: true}
	return p.AppendPipeline.AppendEntries(args, resp)
}
