// Package faults owns the fault schedule of a run: the kinds of fault the
// simulator can inject, described as data; the nemesis ([Generate]) that
// turns a seed into a schedule saying when each fault starts and heals; the
// swarm options ([Mix], [DrawMix]) that let each seed choose which kinds are
// on and how often; the schedule's text and JSON forms ([Schedule.Format],
// [Save], [Load]); and the smaller variants a shrinker tries
// ([Schedule.Candidates]) or the rapid-driven generator whose draws rapid's
// own shrinker minimizes ([Draw]).
//
// It executes nothing: the cluster runner reads a [Schedule] and applies each
// [Fault] at its virtual time. The package is pure, with no clock and no
// global randomness: every choice comes from the [sim.Seed] it is given.
//
// # Time
//
// A run has a safety phase, [0, Schedule.Duration), in which faults happen,
// followed by a fault-free liveness phase on a healed cluster. Every fault
// starts inside the safety phase and heals by its end: At+Duration <=
// Schedule.Duration. A fault is active on the half-open interval
// [At, At+Duration); when one fault heals at the instant another starts, the
// executor heals first. Faults with Duration 0 (membership changes) are
// instantaneous.
//
// # Targets
//
// A [Target] is a role ("leader", "follower", "all") or a concrete node
// index ("n2"). Roles are resolved by the executor from the live cluster at
// the fault's start time: "leader" is the current leader; "follower" is a
// live voter that is not the leader, the executor choosing among several
// from the run's seed; "all" means every link (link faults only). A "random
// node" is resolved by the nemesis when it generates the schedule, into a
// concrete index, so that a saved schedule says everything that is random
// about it and a shrinker editing it changes nothing else.
//
// Nodes 0..Nodes-1 form the initial cluster. A node added by add-voter or
// add-learner gets a fresh index below Nodes+MaxMembershipChanges, named by
// that fault's target, which is never reused. The executor skips (and reports) a fault whose target is not a live
// member at its start, e.g. a node removed earlier by a role-targeted
// remove-node, or a crash of a node that is already down.
//
// # Constraints
//
// Schedules stay within what the testbed claims raft survives, and
// [Schedule.Validate] checks it for every schedule, generated, drawn, loaded or
// shrunk:
//   - the node-down faults (crash, power-loss, pause, disk-error) active at
//     any instant number at most a minority of the voters, (voters-1)/2;
//   - at most one fault of each other kind is active at a time (partition
//     and flap count as one kind), so that healing one never heals another;
//   - at most [MaxMembershipChanges] membership changes; removals never leave
//     fewer than [MinVoters] voters; additions never make more than
//     [MaxVoters].
package faults
