package actors

import "testing"

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
