package envelope

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
)

// ErrTooLarge is returned by Fit when a message cannot be made to fit in
// the limit even with its bodies cut (its headers alone are too large).
var ErrTooLarge = errors.New("message larger than the NATS max payload")

// body is one captured body of a message: what Fit may cut.
type body struct {
	b         *[]byte
	truncated *bool
}

// bodies lists the captured bodies of an envelope: the request's, then
// the primary's.
func (e *Envelope) bodies() []body {
	return []body{{&e.Request.Body, &e.Request.BodyTruncated}, {&e.Primary.Body, &e.Primary.BodyTruncated}}
}

// FitEnvelope returns data (env encoded) when it fits in limit bytes (the
// NATS server's max payload; 0 or less: no limit). Otherwise it cuts the
// captured bodies, sharing the room fairly between them and flagging each
// cut one truncated (BodySize keeps the full size), and encodes env again;
// ErrTooLarge if even that does not fit.
func FitEnvelope(env *Envelope, data []byte, limit int) ([]byte, error) {
	return fit(env, env.bodies(), data, limit)
}

// FitPair is FitEnvelope for a pair: the envelope's bodies, the shadow's
// and the secondary's share the room.
func FitPair(p *Pair, data []byte, limit int) ([]byte, error) {
	bs := append(p.Envelope.bodies(), body{&p.Shadow.Body, &p.Shadow.BodyTruncated})
	if p.Secondary != nil {
		bs = append(bs, body{&p.Secondary.Body, &p.Secondary.BodyTruncated})
	}
	return fit(p, bs, data, limit)
}

// fit cuts bodies so that v, encoded, fits in limit: each body keeps
// min(its length, an equal share of what the smaller ones leave).
func fit(v any, bodies []body, data []byte, limit int) ([]byte, error) {
	if limit <= 0 || len(data) <= limit {
		return data, nil
	}
	enc := base64.StdEncoding.EncodedLen
	// Slack for the JSON around the bodies, which grows a little (a
	// "body_truncated":true per cut body, base64 padding).
	room := limit - len(data) - 32*len(bodies) - 16
	for _, b := range bodies {
		room += enc(len(*b.b))
	}
	if room <= 0 {
		return nil, ErrTooLarge
	}
	share(bodies, room/4*3)
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, ErrTooLarge
	}
	return data, nil
}

// share cuts bodies so that together they keep at most raw bytes, fairly:
// each keeps min(its length, an equal share of what the smaller ones
// leave); a cut body is flagged truncated.
func share(bodies []body, raw int) {
	order := make([]int, len(bodies))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return len(*bodies[x].b) - len(*bodies[y].b) })
	for k, i := range order {
		b := bodies[i]
		keep := min(len(*b.b), raw/(len(order)-k))
		raw -= keep
		if keep < len(*b.b) {
			*b.b = (*b.b)[:keep]
			*b.truncated = true
		}
	}
}
