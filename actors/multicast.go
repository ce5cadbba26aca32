package actors

import (
	"net/netip"

	"github.com/gotaps/gotaps/messages"
)

// A listener of multicast groups (RFC 9622 §6.1.1: "one Connection per
// sender, all in one Connection Group") has its connections made in one
// group instead of a group each:
//
//   - the root, asked to start such a listener (multicastListen), first
//     spawns an empty group and tells it it is held (holdGroup), then the
//     listener with that group's PID;
//   - the listener sends each accepted transport (a sender's first
//     datagram: stacks' UDP listener demultiplexes by sender) to that
//     group as adoptConnection, where it would send it to the root
//     otherwise; the group makes the connection's spec as the root does
//     and spawns it as one more member, which reports Ready to the
//     listener (ConnectionReceived) as any accepted connection does;
//   - a held group does not end when its last member does (the next
//     sender joins it), nor at a CloseGroup, which closes the members it
//     has: it ends once the listener, stopping, has released it
//     (releaseGroup) and it has no member left. The listener's
//     adoptConnection messages reach the group before its releaseGroup
//     (one sender, one mailbox, in order), so none is lost when it ends;
//     those it receives once the System shuts down are aborted.

// holdGroup makes a new group the held group of a multicast listener; id
// is the group's.
type holdGroup struct{ id uint64 }

// releaseGroup: the listener holding the group has stopped.
type releaseGroup struct{}

// multicastListen reports whether cfg listens on multicast groups.
func multicastListen(cfg *messages.ConnectionConfig) bool {
	for _, l := range cfg.Locals {
		if l.Multicast {
			return true
		}
	}
	return false
}

// multicastSource is the source of a source-specific group local
// endpoint (the zero Addr for any-source, or no group).
func multicastSource(l *messages.Endpoint) netip.Addr {
	if l == nil || !l.Multicast || l.MulticastSource == "" {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(l.MulticastSource)
	return a
}
