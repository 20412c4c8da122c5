// Package compare decides whether a shadow's response matches the primary's
// and, when it does not, says where: a list of typed Diffs, each a path and
// a kind. It also splits diffs into real ones and noise (Noise), groups
// mismatches into classes (Fingerprint) and masks secrets in what is stored
// (Redact). The user-facing reference of the rules is docs/compare.md.
//
// Callers go through Comparer (or Pair, which uses the defaults). A
// launch's rules (Rules, the "compare" object of the launch API) are
// validated and compiled once with Compile into a Ruleset that Comparer
// uses; a nil Ruleset means the defaults.
//
// # Diffs
//
// Kinds: status, header, missing_field (only the primary has it),
// extra_field (only the shadow has it), type_changed, value_changed,
// array_length, array_order (same elements, other order), body_text,
// body_binary, and format_changed (made by Classify, never by Pair).
// Diffs come in this order: status, header.Content-Type, the
// other headers by name, then the body in document order of the primary.
//
// # Paths
//
// A status diff's path is "status", a header diff's "header." and the
// canonical header name (http.CanonicalHeaderKey: header.Cache-Control,
// header.Etag, header.Www-Authenticate). Body paths start at "$": a member
// whose name matches [A-Za-z_][A-Za-z0-9_]* is ".name", any other name is
// bracket-quoted with JSON string escaping (["a b"], ["x-id"]); array
// elements are [3]: $.items[3].price, $.headers["x-request-id"]. A text or
// binary body has one path, "$". Diff.Generalized is the path with every
// index replaced by [*] ($.items[*].price), for grouping; Generalize does
// the same to a stored path.
//
// Rule paths use the same syntax plus wildcards: ".*" or "[*]" match any
// one member or element, ".." before a step matches it at any depth below
// ($..updated_at, $..[*], $..["x-id"]), and names may also be quoted with
// single quotes (['a b']). Every Diff path is a rule path matching exactly
// itself. A rule path has at most MaxRulePathLen bytes and
// MaxRulePathSteps steps; a list holds at most MaxRuleEntries entries.
//
// # Status
//
// Equal codes match. With Rules.StatusClassOnly, codes of the same class
// (2xx, 3xx, ...; 100 to 599) match: 200 and 204 do, 200 and 500 do not.
//
// # Headers
//
// DefaultCompareHeaders are compared, each by its own rule: Content-Type
// by media type only ("application/json; charset=utf-8" equals
// "application/json"), list headers (Vary, Allow, Cache-Control,
// Content-Language, Access-Control-Allow-*) as sets of case-insensitive
// comma-separated tokens, Content-Encoding as such tokens in order, ETag by
// presence only (values differ between instances for equal content), the
// others (Location, Content-Disposition, Content-Range, Retry-After,
// WWW-Authenticate, Access-Control-Allow-Origin, Access-Control-Max-Age)
// exactly, field lines joined with ", " and trimmed. A header missing on
// both sides matches; on one side it does not. Other headers are not
// compared unless Rules.CompareHeaders names them ("*" for all, "X-Foo-*"
// for a prefix); they are then compared exactly. DefaultVolatileHeaders
// (Date, Server, request and trace ids, Set-Cookie, Age, Expires,
// Last-Modified, Content-Length ...) are never compared unless named
// exactly in CompareHeaders, and Rules.IgnoreHeaders wins over everything.
// ContentTypeMatch is about Content-Type alone; HeadersMatch about every
// compared header, Content-Type included (ignoring Content-Type makes
// both true).
//
// # Bodies
//
// Each body is first decoded from its Content-Encoding (gzip, x-gzip,
// deflate as zlib or raw DEFLATE, br, zstd, in the order listed, identity
// ignored), never past MaxBodyBytes: a body that decodes to more, like a
// decompression bomb, is cut there, flagged Truncated and noted, and so is
// a plain body longer than MaxBodyBytes. A body the tap truncated decodes
// as far as it goes. When either body cannot be decoded (corrupt data, an
// unknown coding) both are compared as raw bytes (BodyFormat "binary") and
// Note says why.
//
// The primary's media type picks the format (Result.BodyFormat): JSON
// (application/json and any +json type), ndjson (a sequence of JSON texts,
// IsJSONSeq: compared as the array of its texts, paths $[3].field), form
// (application/x-www-form-urlencoded), text (text/*, HTML, XML and +xml,
// JavaScript, GraphQL, YAML) or
// binary (anything else, and no Content-Type). Two empty bodies are
// "empty" and match.
//
//   - JSON is compared structurally (below). If either body does not parse,
//     or either is truncated (a prefix of a document is not the document),
//     the bodies are compared as text, BodyFormat is "text" and Note says
//     why.
//   - Forms are compared field by field: a field that occurs once on both
//     sides is a string at $.name (["a b"] for other names); a field that
//     occurs more than once on either side is an array of its values in
//     order ($.tag[1]), compared like a JSON array of strings (array_length,
//     array_order, unordered_arrays apply). The order of different fields
//     does not count. "+" is a space; a body with a bad percent escape is
//     compared as text.
//   - Text is compared byte for byte: one body_text diff at "$", and
//     Result.Summary shows the first differing line, e.g.
//     line 12: -"foo" / +"bar", each side quoted and cut to a few dozen
//     bytes, starting just before the first differing byte (with its column)
//     on long lines, (end) for a side that has no such line.
//   - Binary is compared byte for byte: one body_binary diff at "$", and
//     Summary gives both lengths and sha256 prefixes.
//
// Byte comparison also compares the full sizes when both are known, so two
// bodies truncated at the same length with equal prefixes but different
// sizes differ.
//
// # JSON
//
// Both bodies are parsed (RFC 8259, strict: one value, no trailing data)
// without recursion into one flat node slice each. Then:
//
//   - Objects are compared by member name, in any order. Duplicate names
//     (which RFC 8259 leaves undefined): when both objects list the same
//     names in the same order, members are paired by position; otherwise
//     the last occurrence of a name counts, as in encoding/json.
//   - Values of different JSON types are type_changed; same type, different
//     value value_changed. true and false are one type.
//   - Numbers are compared by exact decimal value, never through float64:
//     1, 1.0, 1e0 and 10E-1 are equal, 0 and -0 too, and
//     12345678901234567890 and 12345678901234567891 differ. Literals whose
//     exponent has more than 18 digits are equal only if their text is.
//     With Rules.NumericTolerance, numbers a and b that differ are still
//     equal when |a-b| <= absolute or |a-b| <= relative*max(|a|,|b|)
//     (computed in float64; infinities never).
//   - Strings are compared after unescaping ("\u0041" equals "A").
//
// Arrays are compared in one of three modes, chosen by the array's path:
//
//   - By position (the default). Different lengths: array_length at the
//     array, the common prefix element by element, then each element past
//     the shorter length missing_field or extra_field at its index. Equal
//     lengths: elements equal in place count for nothing; if the others
//     hold the same elements (a multiset, compared under the rules) in
//     another order, the array is one array_order diff instead of a cascade;
//     otherwise they are compared element by element.
//   - As a multiset (Rules.UnorderedArrays; "$..*" is every array, the root
//     included). Order does not count. Elements are paired greedily, each
//     primary element with the first equal unpaired shadow element (under
//     a tolerance, pairing is greedy, not optimal). A primary element left
//     unpaired is missing_field at its primary index, a shadow element
//     extra_field at its shadow index; the length difference is implied and
//     not reported.
//   - By key (Rules.ArrayKeys, e.g. {"$.items": "id"}). Elements that are
//     objects whose key member holds a scalar are paired by its value (1
//     and 1.0 are one key, "A" and "\u0041" too); elements without one (not
//     an object, no such member, an object or array value, or a value an
//     earlier element already has) are paired by their order among
//     themselves. A paired element is compared at its primary index, so an
//     insertion is one extra_field at its shadow index and a deletion one
//     missing_field at its primary index, never a cascade. When keyed
//     elements come in another relative order, one array_order diff is
//     reported at the array first, unless the array is also unordered. If
//     several array_keys paths match an array, the lexically first wins.
//
// Inside multiset and keyed arrays, positions carry no meaning, so a rule
// path step with a numeric index ([3]) never matches an element there; [*]
// and .* do.
//
// # Ignored paths
//
// No diff is reported at or below a path matching one of
// Rules.IgnorePaths: $.meta.* ignores every direct child of meta (not meta
// itself), $..updated_at that name at any depth, $.items[*].price the price
// of every item, "$" the whole body (of any format). An ignored member
// that only one side has is not reported either; an ignored element still
// counts in array_length.
//
// # Bounds
//
// The work per pair is bounded, and each bound reached sets
// Result.Truncated and explains itself in Result.Note:
//
//   - MaxDepth (default 64): containers nested deeper are compared as raw
//     text, a difference below being one value_changed at the container's
//     path (whitespace and member order count there).
//   - MaxDiffs (default 100): at most that many Diffs are recorded; the
//     walk stops at the first one past the limit.
//   - MaxBodyBytes (default 8 MiB): see Bodies.
//   - Matching elements as multisets compares candidate pairs; these probes
//     have a budget proportional to the documents' size. Past it, further
//     elements are taken as different, so equal elements may be reported as
//     missing and extra.
//
// Hitting a bound never turns a mismatch into a match, except that two
// bodies cut at the same length with equal prefixes and equal (or unknown)
// full sizes match, flagged.
//
// # Cost
//
// Byte-identical bodies match without being parsed. Otherwise the parser
// builds one flat node slice per document (pooled between calls), subtrees
// with equal text are skipped, and rules are run as one automaton whose
// state is pushed and popped along the walk (nothing is done per node
// without rules). Multisets are matched by a hash of each element that is
// equal for equal elements, so candidates are few. Allocation is limited
// to the paths of recorded diffs, objects whose members differ in name or
// order, strings with escapes, and arrays matched by key.
//
// # Noise, fingerprints, redaction
//
// Classify (and Noise) marks as noise every shadow diff whose Path also
// differs between the primary and a secondary instance of the primary's
// version in the same request, except a field the old version always has
// (or never has), and a value whose Shape (shape.go: JSON type and string
// format class) does not fit the one primary and secondary agree on: that
// one becomes a format_changed diff. Shapes come with Comparer.Shapes. Fingerprint hashes the route and the set of
// (Generalized, Kind) of a mismatch into 16 hex digits: the class of the
// mismatch, the same whatever the indices, order or repetitions. Redact and
// RedactRequest mask DefaultRedactHeaders, DefaultRedactKeys (any depth,
// JSON and forms, query strings) and the rules' own lists, and drop a body
// they cannot check, see Redact; then they mask by value (MaskSecrets:
// JWTs, cloud keys, Bearer credentials, private keys, API keys) and the
// request's own credentials echoed back (RequestEchoes). Result.Summary is
// masked the same way (Comparer.RequestHeaders gives the echoes).
//
// # Invariants
//
// Match == StatusMatch && HeadersMatch && BodyMatch, and Match ==
// (len(Diffs) == 0). Without StatusClassOnly, StatusMatch is exactly
// primary.Status == shadow.Status. A response matches itself. Pair never
// panics, whatever the bodies and headers hold.
package compare
