package actors

import (
	"slices"
	"testing"
)

// drain requests every member's writes up front (all backlogged) and
// returns the grant order.
func drain(s *groupScheduler, reqs []schedRequest) []string {
	var order []string
	for _, r := range reqs {
		s.join(r.member)
	}
	for _, r := range reqs {
		if g, ok := s.request(r.member, r.bytes, r.priority); ok {
			order = append(order, g)
		}
	}
	for {
		g, ok := s.release()
		if !ok {
			return order
		}
		order = append(order, g)
	}
}

func TestGroupSchedulerPolicies(t *testing.T) {
	backlog := func(pa, pb int64) []schedRequest {
		var rs []schedRequest
		for i := 0; i < 3; i++ {
			rs = append(rs, schedRequest{member: "a", bytes: 100, priority: pa}, schedRequest{member: "b", bytes: 100, priority: pb})
		}
		return rs
	}
	tests := []struct {
		policy string
		reqs   []schedRequest
		want   string
	}{
		{"FCFS", backlog(5, 1), "ababab"},
		{"StrictPriority", backlog(5, 1), "abbbaa"}, // a was granted before b asked; then b first
		{"RoundRobin", backlog(5, 1), "ababab"},
		{"WeightedFairQueueing", backlog(0, 0), "ababab"},
		// a weighs 3x b (priority 0: cost x1; priority 2: cost x3)
		{"WeightedFairQueueing", append(backlog(0, 2), schedRequest{member: "a", bytes: 100}, schedRequest{member: "a", bytes: 100}), "aaabaabb"},
	}
	for i, tt := range tests {
		got := ""
		for _, m := range drain(newGroupScheduler(tt.policy), tt.reqs) {
			got += m
		}
		if got != tt.want {
			t.Errorf("#%d %s: grant order %q; want %q", i, tt.policy, got, tt.want)
		}
	}
}

func TestGroupSchedulerLeave(t *testing.T) {
	s := newGroupScheduler("FCFS")
	s.join("a")
	s.join("b")
	if g, _ := s.request("a", 1, 0); g != "a" {
		t.Fatalf("first grant %q", g)
	}
	s.request("b", 1, 0)
	s.request("a", 1, 0)
	s.leave("b")
	if g, _ := s.release(); g != "a" {
		t.Fatalf("after b left, got %q", g)
	}
	if _, ok := s.release(); ok {
		t.Fatal("nothing should be left")
	}
}

// backlogTurns runs two always-backlogged members through the scheduler as
// the group and connActor do: each grant writes one turn cut by splitTurn
// off the member's queue of messages (sizes), charged with wrote, and the
// member asks again with its release while it has more. It returns the
// turns as member and bytes.
func backlogTurns(policy string, sizes map[string][]int, prio map[string]int64, turns int) (who []string, bytes []int) {
	s := newGroupScheduler(policy)
	queues := map[string][]writeItem{}
	for _, m := range []string{"a", "b"} {
		for _, n := range sizes[m] {
			queues[m] = append(queues[m], writeItem{send: &outSend{bytes: n}, bufs: [][]byte{make([]byte, n)}})
		}
		s.join(m)
	}
	left := func(m string) int {
		n := 0
		for _, w := range queues[m] {
			for _, b := range w.bufs {
				n += len(b)
			}
		}
		return n
	}
	g, _ := s.request("a", left("a"), prio["a"])
	if g2, ok := s.request("b", left("b"), prio["b"]); ok {
		g = g2
	}
	for len(who) < turns && g != "" {
		q, split := s.quantum()
		turn, rest, n := splitTurn(queues[g], q, split)
		queues[g] = rest
		_ = turn
		who, bytes = append(who, g), append(bytes, n)
		s.wrote(g, n)
		var ok bool
		if more := left(g); more > 0 {
			g, ok = s.releaseAndRequest(g, more, prio[g])
		} else {
			g, ok = s.release()
		}
		if !ok {
			g = ""
		}
	}
	return who, bytes
}

func repeat(n, size int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = size
	}
	return out
}

// TestFairCapacityEqualBytes: under FairCapacity two backlogged members
// with unequal message sizes and unequal connPriority get equal bytes
// (within one turn); WeightedFairQueueing, which weighs connPriority, does
// not.
func TestFairCapacityEqualBytes(t *testing.T) {
	sizes := map[string][]int{"a": repeat(400, 70000), "b": repeat(20000, 700)}
	prio := map[string]int64{"a": 0, "b": 3}
	tests := []struct {
		policy string
		equal  bool
	}{
		{"FairCapacity", true},
		{"WeightedFairQueueing", false},
	}
	for _, tt := range tests {
		who, bytes := backlogTurns(tt.policy, sizes, prio, 200)
		got := map[string]int{}
		maxTurn := 0
		for i, m := range who {
			got[m] += bytes[i]
			maxTurn = max(maxTurn, bytes[i])
			// at every point the shares differ by at most one turn
			if d := got["a"] - got["b"]; tt.equal && (d > maxTurn || -d > maxTurn) {
				t.Fatalf("%s: after %d turns a wrote %d, b %d: more than one turn (%d) apart", tt.policy, i+1, got["a"], got["b"], maxTurn)
			}
		}
		diff := float64(got["a"]-got["b"]) / float64(got["a"]+got["b"])
		if tt.equal && (diff > 0.05 || diff < -0.05) {
			t.Errorf("%s: a wrote %d bytes, b %d: not equal shares", tt.policy, got["a"], got["b"])
		}
		if !tt.equal && diff < 0.3 {
			t.Errorf("%s: a (priority 0) wrote %d bytes, b (priority 3) %d: connPriority should weigh", tt.policy, got["a"], got["b"])
		}
	}
}

// TestRoundRobinPerPacketAlternatesQuanta: the members alternate per turn
// and no turn writes more than one packet (schedPacket), a large message
// being cut across turns; RoundRobin alternates per batch of whole
// messages.
func TestRoundRobinPerPacketAlternatesQuanta(t *testing.T) {
	sizes := map[string][]int{"a": repeat(3, 3000), "b": repeat(20, 500)} // 9000 and 10000 bytes
	who, bytes := backlogTurns("RoundRobinPerPacket", sizes, nil, 8)
	wantWho := []string{"a", "b", "a", "b", "a", "b", "a", "b"}
	wantBytes := []int{1200, 1200, 1200, 1200, 1200, 1200, 1200, 1200}
	if !slices.Equal(who, wantWho) || !slices.Equal(bytes, wantBytes) {
		t.Fatalf("RoundRobinPerPacket turns %v %v; want %v %v", who, bytes, wantWho, wantBytes)
	}
	who, bytes = backlogTurns("RoundRobin", sizes, nil, 2)
	if !slices.Equal(who, []string{"a", "b"}) || !slices.Equal(bytes, []int{9000, 10000}) {
		t.Fatalf("RoundRobin turns %v %v; want whole backlogs per turn", who, bytes)
	}
}

func TestSplitTurn(t *testing.T) {
	send := &outSend{bytes: 1500}
	q := []writeItem{
		{bufs: [][]byte{make([]byte, 4)}}, // a framer's header
		{send: send, bufs: [][]byte{make([]byte, 1000), make([]byte, 500)}},
		{send: &outSend{bytes: 10}, bufs: [][]byte{make([]byte, 10)}},
	}
	turn, rest, n := splitTurn(q, 1200, true)
	if n != 1200 || len(turn) != 2 || turn[1].send != nil || len(turn[1].bufs) != 2 || len(turn[1].bufs[1]) != 196 {
		t.Fatalf("split turn: n=%d %+v", n, turn)
	}
	if len(rest) != 2 || rest[0].send != send || !rest[0].cont || len(rest[0].bufs) != 1 || len(rest[0].bufs[0]) != 304 || movable(rest[0]) {
		t.Fatalf("split rest: %+v", rest)
	}
	turn, rest, n = splitTurn(q, 1200, false)
	if n != 1504 || len(turn) != 2 || len(rest) != 1 {
		t.Fatalf("whole items: n=%d turn %d rest %d", n, len(turn), len(rest))
	}
	// an item ending exactly at the quantum is not cut
	turn, rest, n = splitTurn(q[1:], 1500, true)
	if n != 1500 || len(turn) != 1 || turn[0].send != send || len(rest) != 1 || rest[0].cont {
		t.Fatalf("exact fit: n=%d turn %+v rest %+v", n, turn, rest)
	}
}

// TestWFQChargesTurnsNotBacklogs: WeightedFairQueueing charges each grant
// with the bytes of the turn, not with everything its member has queued.
// a (connPriority 1) weighs twice b (connPriority 3): while both are
// backlogged a writes two thirds, however much each has queued (charged
// with its backlog, a with much queued was put behind b until b had
// nothing left: 1 turn in 15). A turn above the quantum (one large
// message) is charged what it wrote: equal priorities then get equal
// bytes whatever their message sizes.
func TestWFQChargesTurnsNotBacklogs(t *testing.T) {
	share := func(sizes map[string][]int, prio map[string]int64, turns int) float64 {
		who, bytes := backlogTurns("WeightedFairQueueing", sizes, prio, turns)
		got := map[string]int{}
		for i, m := range who {
			got[m] += bytes[i]
		}
		return float64(got["a"]) / float64(got["a"]+got["b"])
	}
	for _, backlogs := range [][2]int{{4000, 100}, {100, 100}, {300, 2000}} {
		s := share(map[string][]int{"a": repeat(backlogs[0], 16<<10), "b": repeat(backlogs[1], 16<<10)},
			map[string]int64{"a": 1, "b": 3}, 15)
		if s < 0.6 || s > 0.72 {
			t.Errorf("backlogs %v messages: a (priority 1) wrote %.2f of the bytes; want 2/3", backlogs, s)
		}
	}
	s := share(map[string][]int{"a": repeat(100, 200_000), "b": repeat(2000, 16<<10)}, nil, 40)
	if s < 0.4 || s > 0.6 {
		t.Errorf("equal priorities, a's messages above the quantum: a wrote %.2f of the bytes; want half", s)
	}
}

// A connPriority set while a member waits for its turn counts for that
// turn: the queued request takes it (it kept the old one until the next
// request).
func TestSchedulerReprioritizeQueuedRequest(t *testing.T) {
	tests := []struct {
		policy string
		pa, pb int64 // a's and b's connPriority when they ask
		pa2    int64 // a's, set while it waits
		want   string
	}{
		{"StrictPriority", 5, 3, 1, "ab"},
		{"StrictPriority", 1, 3, 5, "ba"},
		{"StrictPriority", 5, 3, 5, "ba"},       // unchanged
		{"WeightedFairQueueing", 9, 0, 0, "ab"}, // same cost, equal weight now: a asked first
		{"WeightedFairQueueing", 0, 1, 9, "ba"},
		{"FCFS", 5, 3, 1, "ab"}, // arrival order, whatever the priority
	}
	for _, tt := range tests {
		s := newGroupScheduler(tt.policy)
		for _, m := range []string{"x", "a", "b"} {
			s.join(m)
		}
		g, ok := s.request("x", 100, 0) // holds the turn while a and b ask
		if !ok || g != "x" {
			t.Fatalf("%s: first grant %q %v", tt.policy, g, ok)
		}
		s.request("a", 100, tt.pa)
		s.request("b", 100, tt.pb)
		s.reprioritize("a", tt.pa2)
		got := ""
		for {
			g, ok := s.release()
			if !ok {
				break
			}
			got += g
		}
		if got != tt.want {
			t.Errorf("%s a %d->%d b %d: grant order %q; want %q", tt.policy, tt.pa, tt.pa2, tt.pb, got, tt.want)
		}
	}
}
