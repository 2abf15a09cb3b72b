package pair

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWindow(t *testing.T) {
	msg := func(epoch, seq uint64) Message { return Message{Epoch: epoch, Seq: seq} }
	var w Window
	steps := []struct {
		name string
		m    Message
		want bool
	}{
		{"first message, even seq 0", msg(100, 0), true},
		{"same seq repeated", msg(100, 0), false},
		{"next seq", msg(100, 1), true},
		{"gap is fine", msg(100, 7), true},
		{"older seq (reordered or replayed)", msg(100, 6), false},
		{"same seq again", msg(100, 7), false},
		{"old epoch, higher seq", msg(99, 1000), false},
		{"restart: higher epoch, seq from 1", msg(200, 1), true},
		{"previous epoch now rejected", msg(100, 8), false},
		{"new epoch repeated", msg(200, 1), false},
		{"new epoch goes on", msg(200, 2), true},
	}
	for _, s := range steps {
		assert.Equal(t, s.want, w.Accept(s.m), s.name)
	}
}
