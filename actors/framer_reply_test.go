package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"
)

// postRecorder is a Poster's process that keeps what is posted.
type postRecorder struct{ got []any }

func (r *postRecorder) SendUserMessage(_ *actor.PID, msg any) { r.got = append(r.got, msg) }
func (r *postRecorder) SendSystemMessage(*actor.PID, any)     {}
func (r *postRecorder) Stop(*actor.PID)                       {}

// A lone framer leaves a send's output in the send's box for the
// connection (no message) only while the connection waits for it there
// and no earlier output of the framer is still queued at the connection;
// otherwise the output is posted, behind the earlier ones.
func TestFramerOutputLeftInTheBoxOnlyWhenNothingIsQueued(t *testing.T) {
	for _, tc := range []struct {
		name       string
		queued     int32 // outputs posted and not yet handled
		reply      int32 // the connection's side of the box
		wantPosted bool
		wantReply  int32
	}{
		{"waiting, nothing queued", 0, replyWaiting, false, replyFilled},
		{"waiting, an earlier output queued", 1, replyWaiting, true, replyWaiting},
		{"the connection stopped waiting", 0, replyNone, true, replyNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &postRecorder{}
			a := &framerActor{idx: 0, n: 1, toConn: Poster{pid: actor.NewPID("test", "conn"), proc: rec}, posting: true}
			a.queued.Store(tc.queued)
			e := &framedSend{}
			e.out.box = e
			e.reply.Store(tc.reply)
			a.framed = &e.ff
			a.emit([]byte("header"))
			a.emit([]byte("payload"))
			a.flushOut(nil, &e.out)
			require.Equal(t, tc.wantReply, e.reply.Load(), "the box's reply state")
			require.Len(t, e.ff.bufs, 2, "the output is in the box either way")
			if !tc.wantPosted {
				require.Empty(t, rec.got, "nothing posted: the connection takes it from the box")
				require.Nil(t, e.ff.queued)
				require.Equal(t, tc.queued, a.queued.Load())
				return
			}
			require.Equal(t, []any{&e.ff}, rec.got, "posted to the connection")
			require.Same(t, &a.queued, e.ff.queued, "the connection lowers the framer's count when it handles it")
			require.Equal(t, tc.queued+1, a.queued.Load())
		})
	}
}
