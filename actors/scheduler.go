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
	served  map[string]int     // FairCapacity: bytes each member wrote
	granted string             // the member holding the grant
	// grantCost and grantWeight: what the grant's WFQ finish tag charged
	// its member (bytes, and the cost per byte): wrote corrects the
	// charge to the bytes the turn wrote
	grantCost   int
	grantWeight float64
}

// Per-turn quanta: what a member sharing a session writes per grant.
const (
	// schedQuantum is the turn of every policy but RoundRobinPerPacket.
	schedQuantum = 64 << 10
	// schedPacket is RoundRobinPerPacket's turn: one QUIC packet's worth
	// of stream data (RFC 9000 §14: 1200 bytes is the least datagram size
	// every path carries), so members alternate per packet.
	schedPacket = 1200
)

// quantum is the most a member writes per grant under the policy;
// RoundRobinPerPacket splits messages at it (splitTurn).
func (s *groupScheduler) quantum() (n int, split bool) {
	if s.policy == "RoundRobinPerPacket" {
		return schedPacket, true
	}
	return schedQuantum, false
}

// wrote charges member with the n bytes its last turn wrote: FairCapacity
// shares capacity in these bytes.
func (s *groupScheduler) wrote(member string, n int) {
	s.served[member] += n
	if member == s.granted && n != s.grantCost {
		// WFQ: the finish tag charged the turn's expected size (at most
		// one quantum); a turn that wrote more (one message above the
		// quantum) or less (what it was granted for expired) is charged
		// what it wrote
		s.finish[member] += float64(n-s.grantCost) * s.grantWeight
		s.grantCost = n
	}
}

type schedRequest struct {
	member   string
	bytes    int
	priority int64 // connPriority: lower goes first (strict), weighs more (WFQ)
	seq      uint64
	tag      float64 // WFQ finish tag, stamped on arrival
	cost     int     // the bytes the tag charged: the turn's, at most one quantum
}

func newGroupScheduler(policy string) *groupScheduler {
	return &groupScheduler{policy: policy, finish: map[string]float64{}, served: map[string]int{}}
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
	delete(s.served, member)
}

// request queues a write of bytes by member (all it has queued) and
// returns the member to grant now, if any.
func (s *groupScheduler) request(member string, bytes int, priority int64) (grant string, ok bool) {
	s.seq++
	r := schedRequest{member: member, bytes: bytes, priority: priority, seq: s.seq}
	// WFQ: the finish tag is the later of the virtual time and the
	// member's last finish, plus the size over the weight (the weight falls
	// as connPriority grows: priority 0 weighs most). The size is the
	// turn's, not the member's whole backlog: a grant writes at most one
	// quantum (wrote corrects the charge to what it wrote). Charged with
	// its backlog, a member with much queued was put behind the others
	// for as long as they had anything, whatever their connPriority.
	q, _ := s.quantum()
	r.cost = min(bytes, q)
	r.tag = math.Max(s.vtime, s.finish[member]) + float64(r.cost)*float64(priority+1)
	s.finish[member] = r.tag
	s.catchUp(member)
	s.queue = append(s.queue, r)
	return s.next()
}

// reprioritize gives member's queued request, if any, its new
// connPriority: set while the member waits for its turn, it counts for
// that turn (StrictPriority ranks by it; WFQ weighs the turn's cost by it,
// from the same start tag). The outstanding grant is not affected.
func (s *groupScheduler) reprioritize(member string, priority int64) {
	for i := range s.queue {
		r := &s.queue[i]
		if r.member != member || r.priority == priority {
			continue
		}
		start := r.tag - float64(r.cost)*float64(r.priority+1)
		r.priority = priority
		r.tag = start + float64(r.cost)*float64(priority+1)
		s.finish[member] = r.tag // its requests are queued in order: the last sets it
	}
}

// release ends the outstanding grant and returns the next member to grant.
func (s *groupScheduler) release() (grant string, ok bool) {
	s.busy, s.granted = false, ""
	return s.next()
}

// releaseAndRequest ends the grant of member, which still has bytes to
// write: its next request competes with the others' in the same choice
// (otherwise a backlogged member would always be served after everyone
// else, whatever the policy).
func (s *groupScheduler) releaseAndRequest(member string, bytes int, priority int64) (grant string, ok bool) {
	s.busy = false // granted stays member for the request: no catchUp, it stayed backlogged
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
	s.lastRR, s.granted = r.member, r.member
	s.grantCost, s.grantWeight = r.cost, float64(r.priority+1)
	return r.member, true
}

// catchUp starts a member that becomes backlogged (nothing queued, no
// grant) at the least count of bytes among the members already backlogged:
// FairCapacity shares the capacity among the members that have something
// to write, and an idle spell earns no credit to be spent in a burst later.
func (s *groupScheduler) catchUp(member string) {
	if member == s.granted {
		return
	}
	least, any := 0, false
	for _, r := range s.queue {
		if r.member == member {
			return
		}
		if v := s.served[r.member]; !any || v < least {
			least, any = v, true
		}
	}
	if s.granted != "" {
		if v := s.served[s.granted]; !any || v < least {
			least, any = v, true
		}
	}
	if any && s.served[member] < least {
		s.served[member] = least
	}
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
	case "FairCapacity":
		// the member that wrote the fewest bytes goes next, whatever the
		// sizes of its messages and its connPriority: backlogged members
		// get equal shares of the session's capacity (RFC 8260 §3.6)
		for i, r := range s.queue {
			b := s.queue[best]
			if sr, sb := s.served[r.member], s.served[b.member]; sr < sb || (sr == sb && r.seq < b.seq) {
				best = i
			}
		}
		return best
	case "RoundRobin", "RoundRobinPerPacket":
		// RoundRobinPerPacket differs in the turn: one packet (quantum)
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
	default: // WeightedFairQueueing (the default)
		for i, r := range s.queue {
			if b := s.queue[best]; r.tag < b.tag || (r.tag == b.tag && r.seq < b.seq) {
				best = i
			}
		}
		return best
	}
}

// splitTurn cuts one turn of at most quantum bytes off the front of a
// member's queue: turn is written now, rest waits for the next grant, n is
// the bytes of turn. Without split the turn holds whole items (at least
// one, even a larger one) until quantum is reached. With split
// (RoundRobinPerPacket) an item straddling quantum is cut there: its head
// leaves now without its send (the Sent event belongs to its last byte),
// and its tail, which keeps the send, is marked cont so that it is never
// reordered or dropped (the bytes before it are on the stream already).
func splitTurn(q []writeItem, quantum int, split bool) (turn, rest []writeItem, n int) {
	for i, w := range q {
		size := 0
		for _, b := range w.bufs {
			size += len(b)
		}
		switch {
		case i > 0 && n >= quantum:
			return q[:i:i], q[i:], n
		case !split || n+size <= quantum:
			n += size
			continue
		}
		// cut w after quantum-n bytes
		k := quantum - n
		var head, tail [][]byte
		for j, b := range w.bufs {
			if k == 0 {
				tail = append(tail, w.bufs[j:]...)
				break
			}
			if len(b) <= k {
				head = append(head, b)
				k -= len(b)
				continue
			}
			head = append(head, b[:k])
			tail = append(append(tail, b[k:]), w.bufs[j+1:]...)
			break
		}
		turn = append(q[:i:i], writeItem{bufs: head})
		rest = append([]writeItem{{send: w.send, bufs: tail, cont: true}}, q[i+1:]...)
		return turn, rest, quantum
	}
	return q, nil, n
}
