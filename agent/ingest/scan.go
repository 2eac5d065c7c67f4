package ingest

import (
	"fmt"
	"unicode/utf8"
)

// scan.go: a small validating JSON scanner. It checks the whole document
// (RFC 8259 grammar, valid UTF-8 in strings, nesting at most maxDepth) and, in
// the same pass, records where the configured field paths' values are, without
// building any value: no reflection, no maps, no allocation.

// maxDepth bounds the nesting of a payload, so a hostile "[[[[…" cannot
// exhaust the stack.
const maxDepth = 32

// The fields a JSON codec extracts from an object.
const (
	fValue = iota
	fTime
	fSensor
	fUnit
	fRoot  // mapping: the object Flatten walks
	fUnit1 // mapping: unit fields a Units entry "@1" or "@2" refers to
	fUnit2
	nFields
)

// paths are the compiled field paths of one topic: segments of "a.b.c".
type paths struct {
	segs   [nFields][]string
	active uint8 // bit f set when field f has a path
}

// span is where a value lies in the payload: b[s:e]. typ is its first byte
// class: 'n' number, '"' string, 't' true, 'f' false, 'z' null, '{' object,
// '[' array; 0 when the field is absent.
type span struct {
	s, e int
	typ  byte
}

type scanner struct {
	b   []byte
	i   int
	err error // the first syntax error
}

func (s *scanner) fail(what string) bool {
	if s.err == nil {
		if s.i >= len(s.b) {
			s.err = fmt.Errorf("%s: unexpected end of payload at offset %d", what, s.i)
		} else {
			s.err = fmt.Errorf("%s at offset %d (byte %q)", what, s.i, s.b[s.i])
		}
	}
	return false
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// value scans one value of any type and returns its span.
func (s *scanner) value(depth int) (span, bool) {
	sp := span{s: s.i}
	var ok bool
	switch c := s.peek(); {
	case c == '{':
		sp.typ, ok = '{', s.object(depth, nil, 0, 0, nil)
	case c == '[':
		sp.typ, ok = '[', s.array(depth)
	case c == '"':
		sp.typ, ok = '"', s.str()
	case c == '-' || (c >= '0' && c <= '9'):
		sp.typ, ok = 'n', s.number()
	case c == 't':
		sp.typ, ok = 't', s.literal("true")
	case c == 'f':
		sp.typ, ok = 'f', s.literal("false")
	case c == 'n':
		sp.typ, ok = 'z', s.literal("null")
	default:
		ok = s.fail("invalid character looking for a value")
	}
	sp.e = s.i
	return sp, ok
}

// object scans an object at s.i. For the fields in active whose path's first
// level segments match the keys so far, it records the value spans in out.
func (s *scanner) object(depth int, p *paths, lvl int, active uint8, out *[nFields]span) bool {
	if depth >= maxDepth {
		return s.fail("nesting deeper than 32")
	}
	s.i++ // '{'
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		if s.peek() != '"' {
			return s.fail("invalid character looking for an object key")
		}
		ks := s.i
		if !s.str() {
			return false
		}
		key := s.b[ks:s.i]
		s.ws()
		if s.peek() != ':' {
			return s.fail("invalid character after object key")
		}
		s.i++
		s.ws()
		var leaf, next uint8
		if active != 0 {
			leaf, next = p.match(key, lvl, active)
		}
		vs := span{s: s.i}
		var ok bool
		if next != 0 && s.peek() == '{' {
			vs.typ = '{'
			ok = s.object(depth+1, p, lvl+1, next, out)
			vs.e = s.i
		} else {
			vs, ok = s.value(depth + 1)
		}
		if !ok {
			return false
		}
		for f := 0; leaf != 0; f++ {
			if leaf&(1<<f) != 0 {
				out[f] = vs
				leaf &^= 1 << f
			}
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			return true
		default:
			return s.fail("invalid character after object value")
		}
	}
}

// match returns the fields in active whose path ends (leaf) or continues
// (next) at the quoted key on level lvl.
func (p *paths) match(quoted []byte, lvl int, active uint8) (leaf, next uint8) {
	raw := quoted[1 : len(quoted)-1]
	var key string
	unescaped := false
	for f := 0; f < nFields; f++ {
		if active&(1<<f) == 0 {
			continue
		}
		seg := p.segs[f][lvl]
		var eq bool
		if !unescaped && !hasEscape(raw) {
			eq = string(raw) == seg
		} else {
			if !unescaped {
				key, _ = unquote(quoted)
				unescaped = true
			}
			eq = key == seg
		}
		if !eq {
			continue
		}
		if len(p.segs[f]) == lvl+1 {
			leaf |= 1 << f
		} else {
			next |= 1 << f
		}
	}
	return leaf, next
}

func (s *scanner) array(depth int) bool {
	if depth >= maxDepth {
		return s.fail("nesting deeper than 32")
	}
	s.i++ // '['
	s.ws()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if _, ok := s.value(depth + 1); !ok {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return true
		default:
			return s.fail("invalid character after array element")
		}
	}
}

// str scans a string, checking escapes, control characters and UTF-8.
func (s *scanner) str() bool {
	s.i++ // '"'
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return true
		case c == '\\':
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for k := 0; k < 4; k++ {
					if !isHex(s.peek()) {
						return s.fail("invalid \\u escape in string")
					}
					s.i++
				}
			default:
				return s.fail("invalid escape in string")
			}
		case c < 0x20:
			return s.fail("control character in string")
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n <= 1 {
				return s.fail("invalid UTF-8 in string")
			}
			s.i += n
		}
	}
	return s.fail("unterminated string")
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number scans a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return s.fail("invalid number")
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return s.fail("invalid number: no digit after '.'")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return s.fail("invalid number: no digit in exponent")
		}
	}
	return true
}

func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.fail("invalid literal")
	}
	s.i += len(lit)
	return true
}

func hasEscape(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}
