// Package netpolicy is the target policy shared by the reporter (which
// validates a launch's shadow_url and secondary_url on create and PATCH)
// and the shadow-runner (which applies it again when it dials, so a DNS
// name that resolves to a refused address only later is refused too).
//
// Two layers:
//
//   - Always refused, whatever the settings: link-local and cloud metadata
//     addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254,
//     100.100.100.200, 168.63.129.16, their IPv4-mapped, IPv4-compatible,
//     NAT64 and 6to4 IPv6 forms) and metadata host names
//     (metadata.google.internal, metadata.goog, ...). An IPv4 address
//     written the way inet_aton reads it (2852039166, 0xa9fea9fe,
//     0251.0376.0251.0376, 169.254.43518) counts as that address.
//   - An allow-list, when one is set: host names (exact, or "*.example.com"
//     for any name under example.com), and CIDRs or single addresses. A
//     URL whose host is a name must match a name entry; one whose host is
//     an IP literal must fall in a CIDR entry.
//
// At dial time only the address is known (Control, for net.Dialer.Control):
// it refuses the always-refused addresses, whatever name led there. A name
// the allow-list admits may resolve to any other address: the operator
// vouched for the name.
package netpolicy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// ErrRefused wraps every refusal: a target the policy does not allow.
var ErrRefused = errors.New("target refused by policy")

// ErrSyntax wraps an allow-list entry that does not parse.
var ErrSyntax = errors.New("invalid target allow-list entry")

// refusedPrefixes are never dialled: link-local (the metadata services of
// AWS, GCP, Azure, DigitalOcean, OpenStack, Oracle live at 169.254.169.254)
// and other metadata endpoints.
var refusedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),     // IPv4 link-local, cloud metadata
	netip.MustParsePrefix("fe80::/10"),          // IPv6 link-local
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS metadata over IPv6
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("168.63.129.16/32"),   // Azure WireServer
}

// refusedNames are metadata host names, refused before any lookup.
var refusedNames = []string{
	"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal",
	"metadata.azure.internal", "metadata.tencentyun.com", "metadata.packet.net",
}

// Refused reports whether ip is always refused. IPv6 forms that embed an
// IPv4 address (::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::a.b.c.d, 2002:aabb:ccdd::)
// are judged by that address.
func Refused(ip netip.Addr) bool {
	ip = ip.WithZone("")
	for _, a := range []netip.Addr{ip, embeddedIPv4(ip)} {
		if !a.IsValid() {
			continue
		}
		for _, p := range refusedPrefixes {
			if p.Contains(a) {
				return true
			}
		}
	}
	return false
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// embeddedIPv4 is the IPv4 address an IPv6 address carries, if any.
func embeddedIPv4(ip netip.Addr) netip.Addr {
	if ip.Is4() {
		return netip.Addr{}
	}
	if ip.Is4In6() {
		return ip.Unmap()
	}
	b := ip.As16()
	v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	switch {
	case nat64.Contains(ip):
		return v4
	case b[0] == 0x20 && b[1] == 0x02: // 6to4: 2002:AABB:CCDD::/48
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
	case [12]byte(b[:12]) == [12]byte{} && ip != netip.IPv6Unspecified() && ip != netip.IPv6Loopback():
		return v4 // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
	}
	return netip.Addr{}
}

// Policy is an allow-list of targets on top of the always-refused ones.
// The zero Policy (and a nil *Policy) allows every target that is not
// always refused.
type Policy struct {
	names    map[string]bool // exact host names, lower case, no trailing dot
	suffixes []string        // "*.example.com" as ".example.com"
	prefixes []netip.Prefix
	entries  []string // as written, for messages
}

// Parse reads a comma-separated allow-list: host names, "*.domain"
// wildcards, CIDRs and single IP addresses. An empty list is no allow-list.
func Parse(list string) (*Policy, error) {
	p := &Policy{names: map[string]bool{}}
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		p.entries = append(p.entries, e)
		if pfx, err := netip.ParsePrefix(e); err == nil {
			p.prefixes = append(p.prefixes, pfx.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(e); err == nil {
			p.prefixes = append(p.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		name := normName(e)
		wild := strings.HasPrefix(name, "*.")
		if wild {
			name = name[2:]
		}
		if !validName(name) {
			return nil, fmt.Errorf("%w: %q is neither a host name, a *.domain wildcard, an IP address nor a CIDR", ErrSyntax, e)
		}
		if wild {
			p.suffixes = append(p.suffixes, "."+name)
		} else {
			p.names[name] = true
		}
	}
	return p, nil
}

// Restricted reports whether the policy has an allow-list.
func (p *Policy) Restricted() bool { return p != nil && len(p.entries) > 0 }

// String is the allow-list as written ("" without one).
func (p *Policy) String() string {
	if p == nil {
		return ""
	}
	return strings.Join(p.entries, ",")
}

func normName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// CheckURL checks the host of an absolute URL; see CheckHost.
func (p *Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return p.CheckHost(u.Hostname())
}

// CheckHost checks a URL's host (a name or an IP literal, without port):
// always-refused names and addresses are refused; with an allow-list, a
// name must match one of its names and an address one of its CIDRs.
func (p *Policy) CheckHost(host string) error {
	if host == "" {
		return fmt.Errorf("%w: no host", ErrRefused)
	}
	ip, isIP := parseHostIP(host)
	if isIP {
		if Refused(ip) {
			return fmt.Errorf("%w: %s is a link-local or cloud metadata address", ErrRefused, host)
		}
		if p.Restricted() && !p.allowsIP(ip) {
			return fmt.Errorf("%w: %s is not in the allowed targets (%s)", ErrRefused, host, p)
		}
		return nil
	}
	name := normName(host)
	for _, r := range refusedNames {
		if name == r {
			return fmt.Errorf("%w: %s is a cloud metadata host", ErrRefused, host)
		}
	}
	if p.Restricted() && !p.allowsName(name) {
		return fmt.Errorf("%w: %s is not in the allowed targets (%s)", ErrRefused, host, p)
	}
	return nil
}

func (p *Policy) allowsIP(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	for _, pfx := range p.prefixes {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

func (p *Policy) allowsName(name string) bool {
	if p.names[name] {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// parseHostIP reads an IP literal (with an optional zone) or an IPv4
// address in any form inet_aton accepts.
func parseHostIP(host string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, true
	}
	if ip, ok := parseInetAton(host); ok {
		return ip, true
	}
	return netip.Addr{}, false
}

// parseInetAton reads a, a.b, a.b.c and a.b.c.d with decimal, octal (0...)
// or hex (0x...) parts, as the C resolver does: "2852039166" and
// "0xa9.0xfe.0xa9.0xfe" are 169.254.169.254 to it.
func parseInetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, part := range parts {
		if part == "" {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(part, 0, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i, v := range vals[:last] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// Control is a net.Dialer.Control hook: it refuses to connect to an
// always-refused address, whatever name resolved to it. The error wraps
// ErrRefused (the dialer's own error names the network and address).
func Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s is not an IP address", ErrRefused, host)
	}
	if Refused(ip) {
		return fmt.Errorf("%w: %s is a link-local or cloud metadata address", ErrRefused, host)
	}
	return nil
}
