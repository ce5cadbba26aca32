package actors

// A Listener follows its interfaces (listen_follow.go): when the interface
// Selection Property Prohibits anything (whether up or not) and Requires
// nothing, a passive open binds one listening socket to each up interface
// that is not Prohibited (stacks.PathPlan.ListenInterfaces), and that set
// changes as interfaces come up, go down or are removed. The functions of
// this file decide what changes; they are pure.

// followedSite reports whether the listener follows site: its interface
// came from the interface Selection Property's Prohibit (dynamic: the plan
// has no Required interface, whose list never changes), not from its
// local endpoint (WithInterface) and not from a Unix path. locals are the
// local endpoints the sites were planned from (planListen's input).
func followedSite(locals []localAddrs, dynamic bool, s listenSite) bool {
	if !dynamic || s.path != "" || s.iface == "" || s.endpoint < 0 || s.endpoint >= len(locals) {
		return false
	}
	return locals[s.endpoint].iface == ""
}

// diffListen compares the sites of a listener's sockets (cur: one entry per
// socket, so a site appears once per transport protocol bound on it) with
// a new plan (next, planListen's result; nil when nothing is left to
// listen on). add are the followed sites of next that no socket has, in
// next's order, each once; gone are the followed sites of cur that next no
// longer has, in cur's order, each once. A site that is not followed is
// never added or removed: it is bound at Listen and kept until Stop. It
// is pure.
func diffListen(cur, next []listenSite, followed func(listenSite) bool) (add, gone []listenSite) {
	have := make(map[listenSite]bool, len(cur))
	for _, s := range cur {
		have[s] = true
	}
	want := make(map[listenSite]bool, len(next))
	for _, s := range next {
		want[s] = true
	}
	seen := map[listenSite]bool{}
	for _, s := range next {
		if followed(s) && !have[s] && !seen[s] {
			seen[s] = true
			add = append(add, s)
		}
	}
	for _, s := range cur {
		if followed(s) && !want[s] && !seen[s] {
			seen[s] = true
			gone = append(gone, s)
		}
	}
	return add, gone
}
