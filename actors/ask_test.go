package actors

import (
	"context"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"
)

type askReq struct{}
type askResp struct{}

// TestAskReturnsAReplyThatIsThereWhenCtxEnds: an actor that runs on the
// asker's goroutine (the inline mailbox of control actors) has answered
// before Ask waits; with ctx ended too, Ask returns the answer, not ctx's
// error (select alone picks either at random: about half the calls
// failed), so that a caller is never told "cancelled" about a command
// that took effect.
func TestAskReturnsAReplyThatIsThereWhenCtxEnds(t *testing.T) {
	s := NewSystem(Config{})
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	pid := s.AS.Root.Spawn(controlProps(func() actor.Actor {
		return actor.ReceiveFunc(func(c actor.Context) {
			if _, ok := c.Message().(*askReq); ok {
				c.Respond(&askResp{})
			}
		})
	}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 200; i++ {
		r, err := Ask(ctx, s, pid, &askReq{})
		require.NoError(t, err, "call %d", i)
		require.IsType(t, &askResp{}, r)
	}
}
