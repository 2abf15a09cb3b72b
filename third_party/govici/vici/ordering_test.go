// Copyright (C) 2026 the bgpgw authors. MIT licence, as the rest of this module.

package vici

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// streamServer answers a streaming command the way charon does: event
// registration confirmed, then every event of the stream and the
// command's response written back to back, then the unregistration.
func streamServer(t *testing.T, conn net.Conn, events int) {
	t.Helper()
	send := func(ms ...*Message) {
		var b bytes.Buffer
		for _, m := range ms {
			p, err := m.encode()
			if err != nil {
				t.Error(err)
				return
			}
			_ = binary.Write(&b, binary.BigEndian, uint32(len(p)))
			b.Write(p)
		}
		_, _ = conn.Write(b.Bytes())
	}
	for {
		var l uint32
		if err := binary.Read(conn, binary.BigEndian, &l); err != nil {
			return
		}
		buf := make([]byte, l)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return
		}
		p := NewMessage()
		if err := p.decode(buf); err != nil {
			t.Error(err)
			return
		}
		switch p.header.ptype {
		case pktEventRegister, pktEventUnregister:
			send(&Message{header: &header{ptype: pktEventConfirm}})
		case pktCmdRequest:
			out := make([]*Message, 0, events+1)
			for i := range events {
				ev := NewMessage()
				ev.header = &header{ptype: pktEvent, name: "list-sa"}
				_ = ev.Set("index", i)
				out = append(out, ev)
			}
			resp := NewMessage()
			resp.header = &header{ptype: pktCmdResponse}
			out = append(out, resp)
			send(out...)
		}
	}
}

// TestStreamEveryEventBeforeResponse: every run of a streaming call yields
// all the events the server wrote before its response. Upstream v0.8.0
// picks between the event and response channels at random, so a run could
// end before its last events (which then broke the next call).
func TestStreamEveryEventBeforeResponse(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	cc := newClientConn(client)
	go cc.listen()
	go streamServer(t, server, 3)
	for run := range 300 {
		events := 0
		for m, err := range cc.stream(context.Background(), "list-sas", "list-sa", nil) {
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
