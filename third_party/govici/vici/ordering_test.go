// Copyright (C) 2026 the bgpgw authors. MIT licence, as the rest of this module.

package vici

import (
	"context"
	"testing"
)

// TestClientConnStreamEveryEventBeforeResponse: the server writes three
// events and then the command's response; every run of the streaming call
// must yield all three events. Upstream v0.8.0 picks between the event and
// response channels at random, so a run could end before its last events
// (which then broke the next call).
func TestClientConnStreamEveryEventBeforeResponse(t *testing.T) {
	cc, ts := newTestClientServer()
	defer cc.conn.Close()
	defer ts.conn.Close()
	for run := 0; run < 300; run++ {
		events := 0
		for m, err := range cc.stream(context.Background(), "cmd-stream", "event-stream", nil) {
			if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
			if _, ok := m.Get("index").(string); ok {
				events++
			}
		}
		if events != 3 {
			t.Fatalf("run %d: %d events before the response, want 3", run, events)
		}
	}
}
