package actors

import (
	"errors"
	"testing"
)

func TestTransitionTable(t *testing.T) {
	tests := []struct {
		from  State
		in    Input
		to    State
		event Event
		err   bool
	}{
		{Establishing, InReady, Established, EvReady, false},
		{Establishing, InEstablishmentFailed, Closed, EvEstablishmentError, false},
		{Establishing, InAbort, Closed, EvEstablishmentError, false},
		{Establishing, InFailure, Closed, EvEstablishmentError, false},
		{Establishing, InClose, Closed, EvClosed, false},
		{Establishing, InRemoteClose, Establishing, EvNone, true},
		{Establishing, InCloseDone, Establishing, EvNone, true},
		{Established, InClose, Closing, EvNone, false},
		{Established, InRemoteClose, Closing, EvNone, false},
		{Established, InAbort, Closed, EvConnectionError, false},
		{Established, InFailure, Closed, EvConnectionError, false},
		{Established, InReady, Established, EvNone, true},
		{Established, InReestablish, Establishing, EvNone, false},
		{Closing, InReestablish, Closing, EvNone, true},
		{Establishing, InReestablish, Establishing, EvNone, true},
		{Established, InCloseDone, Established, EvNone, true},
		{Closing, InClose, Closing, EvNone, false},
		{Closing, InRemoteClose, Closing, EvNone, false},
		{Closing, InCloseDone, Closed, EvClosed, false},
		{Closing, InAbort, Closed, EvConnectionError, false},
		{Closing, InFailure, Closed, EvConnectionError, false},
		{Closing, InReady, Closing, EvNone, true},
		{Closed, InClose, Closed, EvNone, true},
		{Closed, InAbort, Closed, EvNone, true},
		{Closed, InReady, Closed, EvNone, true},
		{Closed, InFailure, Closed, EvNone, true},
		{Established, InEstablishmentFailed, Established, EvNone, true},
		{Closing, InEstablishmentFailed, Closing, EvNone, true},
		{Closed, InEstablishmentFailed, Closed, EvNone, true},
		{Closed, InRemoteClose, Closed, EvNone, true},
		{Closed, InCloseDone, Closed, EvNone, true},
		{Closed, InReestablish, Closed, EvNone, true},
	}
	// every state and input has its row
	seen := map[[2]uint8]bool{}
	for _, tt := range tests {
		seen[[2]uint8{uint8(tt.from), uint8(tt.in)}] = true
	}
	for s := Establishing; s <= Closed; s++ {
		for in := InReady; in <= InReestablish; in++ {
			if !seen[[2]uint8{uint8(s), uint8(in)}] {
				to, ev, err := transition(s, in)
				t.Errorf("no row for %s+%s (it gives %s,%q,%v)", s, in, to, ev, err)
			}
		}
	}
	for i, tt := range tests {
		to, ev, err := transition(tt.from, tt.in)
		if to != tt.to || ev != tt.event || (err != nil) != tt.err {
			t.Errorf("#%d %s+%s: got %s,%q,%v; want %s,%q,err=%v", i, tt.from, tt.in, to, ev, err, tt.to, tt.event, tt.err)
		}
		if err != nil && !errors.Is(err, ErrInvalidTransition) {
			t.Errorf("#%d: error %v does not wrap ErrInvalidTransition", i, err)
		}
	}
}

func TestStateAllows(t *testing.T) {
	tests := []struct {
		s                                     State
		send, recv, close, clone, set, canSnd bool
	}{
		{Establishing, true, true, true, true, true, false},
		{Established, true, true, true, true, true, true},
		{Closing, false, true, true, false, true, false},
		{Closed, false, false, false, false, false, false},
	}
	for _, tt := range tests {
		got := []bool{tt.s.Allows(OpSend), tt.s.Allows(OpReceive), tt.s.Allows(OpClose), tt.s.Allows(OpClone), tt.s.Allows(OpSetProperty), tt.s.CanSend()}
		want := []bool{tt.send, tt.recv, tt.close, tt.clone, tt.set, tt.canSnd}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: check %d got %v want %v", tt.s, i, got[i], want[i])
			}
		}
		if !tt.s.Allows(OpGetProperties) {
			t.Errorf("%s must allow GetProperties", tt.s)
		}
	}
	for s := Establishing; s <= Closed; s++ {
		if s.String() == "" {
			t.Errorf("state %d has no name", s)
		}
	}
}
