package testenv

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// StartDNS serves A records for the names in records (name: IPv4 address,
// names without the trailing dot) over UDP on a free loopback port until
// the test ends, and returns a resolver that asks only it. Every other
// name, and every other query type, gets an answer with no records.
//
// A test points a net.Dialer's Resolver at it to make a name resolve to
// any address, a refused one included, only when it is dialled: nothing
// else on the machine (/etc/hosts, the system resolver) knows the name.
func StartDNS(t testing.TB, records map[string]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dns: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	addrs := map[string]netip.Addr{}
	for name, ip := range records {
		addrs[strings.ToLower(name)+"."] = netip.MustParseAddr(ip)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n], addrs); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	server := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", server)
	}}
}

// dnsAnswer answers one query (RFC 1035 section 4): the header and the
// question copied back, and an A record when the name is known and the
// type is A. Malformed queries get no answer.
func dnsAnswer(q []byte, addrs map[string]netip.Addr) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	var name strings.Builder
	i := 12
	for {
		if i >= len(q) {
			return nil
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil
		}
		name.WriteString(strings.ToLower(string(q[i:i+l])) + ".")
		i += l
	}
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	question := q[12 : i+4]
	resp := make([]byte, 12, 64)
	copy(resp, q[:2])                                              // id
	binary.BigEndian.PutUint16(resp[2:], 0x8180|uint16(q[2]&1)<<8) // response, recursion available (and desired, if asked)
	binary.BigEndian.PutUint16(resp[4:], 1)                        // one question
	resp = append(resp, question...)
	ip, ok := addrs[name.String()]
	if !ok || qtype != 1 || !ip.Is4() {
		return resp
	}
	binary.BigEndian.PutUint16(resp[6:], 1) // one answer
	a := ip.As4()
	resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4) // name at offset 12, A, IN, TTL 1 s, 4 bytes
	return append(resp, a[:]...)
}
