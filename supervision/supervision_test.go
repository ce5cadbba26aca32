package supervision

import (
	"errors"
	"io"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPolicyNeverRestartsSocketOwners(t *testing.T) {
	for _, k := range []Kind{Root, Preconnection, Racer, Candidate, Group, Connection, Framer, Listener} {
		require.Equal(t, actor.StopDirective, DirectiveFor(k), k.String())
	}
	require.True(t, Connection.OwnsSocket())
	require.True(t, Candidate.OwnsSocket())
	require.False(t, Framer.OwnsSocket())
}

func TestContain(t *testing.T) {
	require.NoError(t, Contain("noop", func() {}))
	err := Contain("handler", func() { panic(io.EOF) })
	var pe *PanicError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "handler", pe.Where)
	require.True(t, errors.Is(err, io.EOF))
	require.NotEmpty(t, pe.Stack)
	err = Contain("handler", func() { panic("boom") })
	require.EqualError(t, err, "panic in handler: boom")
}
