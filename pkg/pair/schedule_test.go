package pair

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScheduleRepeatsThenRefresh(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := schedule{refresh: 500 * ms, repeat: []time.Duration{5 * ms, 20 * ms}}

	_, ok := s.next()
	assert.False(t, ok, "nothing sent yet, nothing planned")
	assert.False(t, s.due(at(time.Hour)), "never due before the first transmission")

	s.change(at(0))
	next := func() time.Duration {
		t.Helper()
		n, ok := s.next()
		require.True(t, ok)
		return n.Sub(t0)
	}
	assert.Equal(t, 5*ms, next())
	assert.False(t, s.due(at(4*ms)))
	assert.True(t, s.due(at(5*ms)))
	assert.Equal(t, 20*ms, next())
	assert.True(t, s.due(at(20*ms)))
	assert.Equal(t, 520*ms, next(), "refresh counts from the last transmission")
	assert.False(t, s.due(at(519*ms)))
	assert.True(t, s.due(at(520*ms)))
	assert.Equal(t, 1020*ms, next())
}

func TestScheduleChangeReplacesRepeats(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := schedule{refresh: 500 * ms, repeat: []time.Duration{5 * ms, 20 * ms}}
	s.change(at(0))
	assert.True(t, s.due(at(5*ms)))
	s.change(at(10 * ms)) // a new change before the 20 ms repeat
	n, _ := s.next()
	assert.Equal(t, 15*ms, n.Sub(t0))
	// A late timer: both repeats are past; one transmission covers them.
	assert.True(t, s.due(at(40*ms)))
	n, _ = s.next()
	assert.Equal(t, 540*ms, n.Sub(t0))
	assert.Empty(t, s.pending)
}

func TestScheduleNoRepeats(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := schedule{refresh: time.Second, repeat: nil}
	s.change(t0)
	n, ok := s.next()
	require.True(t, ok)
	assert.Equal(t, t0.Add(time.Second), n)
}

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var l limiter
	ok, n := l.allow(t0)
	assert.True(t, ok)
	assert.Zero(t, n)
	for i := range 3 {
		ok, _ = l.allow(t0.Add(time.Duration(i+1) * 100 * time.Millisecond))
		assert.False(t, ok)
	}
	ok, n = l.allow(t0.Add(time.Second))
	assert.True(t, ok)
	assert.Equal(t, 3, n, "reports what it held back")
}
