// Package compare decides whether a shadow's response matches the primary's
// and, when it does not, says where: a list of Diffs, each a path and a kind.
// It is the first comparison engine; ignore rules and noise learning will
// plug into Comparer later, so callers should go through Comparer (or Pair,
// which uses the defaults) rather than the helpers.
//
// # What is compared
//
//   - Status codes: equal or not (Diff{Path: "status", Kind: KindStatus}).
//   - Content-Type: only the media type ("type/subtype", lower-cased, spaces
//     trimmed). Parameters are ignored: "application/json; charset=UTF-8" and
//     "application/json" match, because a charset or multipart boundary that
//     differs is noise far more often than a regression. A missing header
//     matches only a missing header. A mismatch is
//     Diff{Path: "header.Content-Type", Kind: KindHeader}.
//   - Bodies. Two empty bodies always match. The primary's media type picks
//     the method: application/json or any "+json" type is compared
//     structurally (below); anything else byte for byte, reported as one Diff
//     at "$" of kind KindBodyText (text/*, HTML, XML, JavaScript, form data,
//     and JSON that had to fall back to bytes) or KindBodyBinary (the rest).
//     Byte comparison also compares the full body sizes when both are known,
//     so two bodies truncated at the same limit with equal prefixes but
//     different sizes differ.
//
// # JSON
//
// Both bodies are parsed (RFC 8259, strict: one value, no trailing data). If
// either does not parse, or either body was truncated by its tap (a prefix
// of a JSON document is not the document, even when it happens to parse),
// the bodies are compared as bytes and Result.Note says why. Otherwise:
//
//   - Objects are compared by member name, in any order. A name only the
//     primary has is KindMissingField, one only the shadow has is
//     KindExtraField, both at the member's path. Duplicate names (which RFC
//     8259 leaves undefined): when both objects list the same names in the
//     same order, members are paired by position; otherwise the last
//     occurrence of a name counts, as in encoding/json.
//   - Arrays are compared by position. When the lengths differ, a
//     KindArrayLength Diff is reported at the array's path, then the common
//     prefix is compared element by element, then every element past the
//     shorter length is KindMissingField (only the primary has it) or
//     KindExtraField (only the shadow has it) at its index path.
//   - Values of different JSON types (object, array, string, number,
//     boolean, null) are KindTypeChanged; same type, different value is
//     KindValueChanged. true and false are the same type.
//   - Numbers are compared by exact decimal value, computed from the literal
//     text as encoding/json's json.Number keeps it, never through float64: 1,
//     1.0, 1e0 and 10E-1 are equal, 0 and -0 are equal, and
//     12345678901234567890 and 12345678901234567891 differ. Literals whose
//     exponent has more than 18 digits are equal only if their text is.
//   - Strings are compared after unescaping ("\u0041" equals "A").
//
// # Paths
//
// Paths start at "$". A member whose name matches [A-Za-z_][A-Za-z0-9_]* is
// ".name"; any other name is bracket-quoted with JSON string escaping,
// ["a b"] or ["Content-Type"]; array elements are [3]. For example
// $.items[3].price or $.headers["x-request-id"].
//
// # Bounds
//
// The work per pair is bounded. Containers nested deeper than MaxDepth
// (default 64) are compared as raw text: a difference below that level is
// one KindValueChanged at the container's path, and whitespace or member
// order count there. At most MaxDiffs (default 100) Diffs are recorded;
// the walk stops at the first one past the limit. Either bound being hit
// sets Result.Truncated and explains itself in Result.Note, as does a body
// that the tap truncated. Result.Truncated therefore means "this comparison
// saw less than everything". Hitting MaxDiffs never turns a mismatch into a
// match; below MaxDepth, text comparison can report a mismatch where
// structural comparison would not (whitespace, member order), never miss
// one.
//
// # Cost
//
// Byte-identical bodies match without being parsed. Otherwise the parser
// builds one flat node slice per document (pooled between calls) and the
// walk allocates only for the paths of the diffs it records, for objects
// whose members differ in name or order (a map per such object), and for
// strings with escapes that differ textually.
//
// # Invariants
//
// Match == StatusMatch && ContentTypeMatch && BodyMatch, and Match ==
// (len(Diffs) == 0). StatusMatch is exactly primary.Status == shadow.Status.
// Pair never panics, whatever the bodies hold.
package compare
