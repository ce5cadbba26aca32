package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"
)

// The route monitor reads the usable addresses (two netlink dumps) after a
// burst only when a watcher guards its path; every watcher is told.
func TestBurstTargets(t *testing.T) {
	a, b, l := actor.NewPID("local", "a"), actor.NewPID("local", "b"), actor.NewPID("local", "listener")
	for _, tt := range []struct {
		name   string
		ws     map[uint64]pathWatcher
		n      int
		guards bool
	}{
		{"none", map[uint64]pathWatcher{}, 0, false},
		{"a PathChange handler only", map[uint64]pathWatcher{1: {pid: a}}, 1, false},
		{"a listener following its interfaces", map[uint64]pathWatcher{3: {pid: l}}, 1, false},
		{"one guard among others", map[uint64]pathWatcher{1: {pid: a}, 2: {pid: b, guards: true}, 3: {pid: l}}, 3, true},
		{"guards only", map[uint64]pathWatcher{2: {pid: b, guards: true}}, 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pids, guards := burstTargets(tt.ws, make([]*actor.PID, 5)) // reused: its old content goes
			require.Len(t, pids, tt.n)
			require.Equal(t, tt.guards, guards)
			for _, w := range tt.ws {
				require.Contains(t, pids, w.pid)
			}
		})
	}
}
