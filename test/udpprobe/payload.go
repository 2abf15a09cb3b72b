package main

import (
	"encoding/binary"
	"errors"
)

// Wire format of every datagram (big endian), padded with zeros to -size:
//
//	 0  magic "UDPP"
//	 4  version (1)
//	 5  kind: 0 data, 1 fin
//	 6  flow id (uint16)
//	 8  seq (uint64): data datagrams are numbered 1, 2, ...; a fin carries
//	    the last seq sent on the flow
//	16  send time, Unix ns (int64); a fin carries the send time of the last
//	    data datagram
//	24  interval, ns (int64)
//	32  flow start, Unix ns (int64): planned send time of seq 1
const (
	magic      = "UDPP"
	version    = 1
	kindData   = 0
	kindFin    = 1
	headerSize = 40
)

type packet struct {
	kind       byte
	flow       uint16
	seq        uint64
	sendNs     int64
	intervalNs int64
	startNs    int64
}

func (p packet) marshal(b []byte) {
	copy(b[0:4], magic)
	b[4] = version
	b[5] = p.kind
	binary.BigEndian.PutUint16(b[6:8], p.flow)
	binary.BigEndian.PutUint64(b[8:16], p.seq)
	binary.BigEndian.PutUint64(b[16:24], uint64(p.sendNs))
	binary.BigEndian.PutUint64(b[24:32], uint64(p.intervalNs))
	binary.BigEndian.PutUint64(b[32:40], uint64(p.startNs))
}

var errNotProbe = errors.New("not a udpprobe datagram")

func unmarshal(b []byte) (packet, error) {
	if len(b) < headerSize || string(b[0:4]) != magic || b[4] != version || b[5] > kindFin {
		return packet{}, errNotProbe
	}
	return packet{
		kind:       b[5],
		flow:       binary.BigEndian.Uint16(b[6:8]),
		seq:        binary.BigEndian.Uint64(b[8:16]),
		sendNs:     int64(binary.BigEndian.Uint64(b[16:24])),
		intervalNs: int64(binary.BigEndian.Uint64(b[24:32])),
		startNs:    int64(binary.BigEndian.Uint64(b[32:40])),
	}, nil
}
