package actors

import "math"

// groupScheduler is the connection group transmission scheduler of RFC 9622
// §8.1.5 (connScheduler, RFC 8260 §3): on a transport the members share (the
// streams of one QUIC session), it decides whose write goes next. Members
// ask before each batch (request); one grant is out at a time; release
// returns it. It is pure: no actor, no clock.
type groupScheduler struct {
	policy  string // connScheduler: the RFC 8260 scheduler's name
	queue   []schedRequest
	busy    bool
	seq     uint64
	vtime   float64            // WFQ virtual time: the finish tag of the last grant
	finish  map[string]float64 // WFQ: each member's last finish tag
	lastRR  string             // round robin: the member granted last
	members []string           // round robin: members in join order
}

type schedRequest struct {
	member   string
	bytes    int
	priority int64 // connPriority: lower goes first (strict), weighs more (WFQ)
	seq      uint64
	tag      float64 // WFQ finish tag, stamped on arrival
}

func newGroupScheduler(policy string) *groupScheduler {
	return &groupScheduler{policy: policy, finish: map[string]float64{}}
}

// join records a member for round robin.
func (s *groupScheduler) join(member string) {
	for _, m := range s.members {
		if m == member {
			return
		}
	}
	s.members = append(s.members, member)
}

// leave forgets a member and its queued requests.
func (s *groupScheduler) leave(member string) {
	out := s.queue[:0]
	for _, r := range s.queue {
		if r.member != member {
			out = append(out, r)
		}
	}
	s.queue = out
	for i, m := range s.members {
		if m == member {
			s.members = append(s.members[:i], s.members[i+1:]...)
			break
		}
	}
	delete(s.finish, member)
}

// request queues a write of bytes by member and returns the member to grant
// now, if any.
func (s *groupScheduler) request(member string, bytes int, priority int64) (grant string, ok bool) {
	s.seq++
	r := schedRequest{member: member, bytes: bytes, priority: priority, seq: s.seq}
	// WFQ: the finish tag is the later of the virtual time and the
	// member's last finish, plus the size over the weight (the weight falls
	// as connPriority grows: priority 0 weighs most)
	r.tag = math.Max(s.vtime, s.finish[member]) + float64(bytes)*float64(priority+1)
	s.finish[member] = r.tag
	s.queue = append(s.queue, r)
	return s.next()
}

// release ends the outstanding grant and returns the next member to grant.
func (s *groupScheduler) release() (grant string, ok bool) {
	s.busy = false
	return s.next()
}

// releaseAndRequest ends the grant of member, which still has bytes to
// write: its next request competes with the others' in the same choice
// (otherwise a backlogged member would always be served after everyone
// else, whatever the policy).
func (s *groupScheduler) releaseAndRequest(member string, bytes int, priority int64) (grant string, ok bool) {
	s.busy = false
	return s.request(member, bytes, priority)
}

func (s *groupScheduler) next() (string, bool) {
	if s.busy || len(s.queue) == 0 {
		return "", false
	}
	i := s.pick()
	r := s.queue[i]
	s.queue = append(s.queue[:i], s.queue[i+1:]...)
	s.busy = true
	s.vtime = math.Max(s.vtime, r.tag)
	s.lastRR = r.member
	return r.member, true
}

// pick returns the index of the request to grant under the policy.
func (s *groupScheduler) pick() int {
	best := 0
	switch s.policy {
	case "FCFS":
		return 0 // the queue is in arrival order
	case "StrictPriority":
		for i, r := range s.queue {
			b := s.queue[best]
			if r.priority < b.priority || (r.priority == b.priority && r.seq < b.seq) {
				best = i
			}
		}
		return best
	case "RoundRobin", "RoundRobinPerPacket":
		start := 0
		for i, m := range s.members {
			if m == s.lastRR {
				start = i + 1
				break
			}
		}
		for k := 0; k < len(s.members); k++ {
			m := s.members[(start+k)%len(s.members)]
			for i, r := range s.queue {
				if r.member == m {
					return i
				}
			}
		}
		return 0
	default: // WeightedFairQueueing (the default) and FairCapacity
		for i, r := range s.queue {
			if b := s.queue[best]; r.tag < b.tag || (r.tag == b.tag && r.seq < b.seq) {
				best = i
			}
		}
		return best
	}
}
