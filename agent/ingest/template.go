package ingest

import (
	"fmt"
	"strings"
)

// template.go: topic templates; the syntax is in the package doc.

type levelKind uint8

const (
	levelLiteral levelKind = iota
	levelPlus
	levelCapture
	levelMulti
	levelHash
)

type level struct {
	kind    levelKind
	lit     string // levelLiteral
	capture int    // levelCapture, levelMulti: index into captures
}

// maxCaptures bounds the placeholders of one template, so matching needs no
// allocation.
const maxCaptures = 8

type template struct {
	pattern string
	levels  []level
	names   []string // capture names by index
	multi   int      // index of the {name+} or # level; -1 when none
	sensor  int      // capture index of {sensor}; -1 when none
	kind    int      // capture index of {kind}; -1 when none
}

type captures [maxCaptures]string

func parseTemplate(p string) (*template, error) {
	if p == "" {
		return nil, fmt.Errorf("must not be empty")
	}
	t := &template{pattern: p, multi: -1, sensor: -1, kind: -1}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		var l level
		switch {
		case s == "+":
			l.kind = levelPlus
		case s == "#":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("%q: # must be the last level", p)
			}
			l.kind = levelHash
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			name := s[1 : len(s)-1]
			l.kind = levelCapture
			if multi, ok := strings.CutSuffix(name, "+"); ok {
				name, l.kind = multi, levelMulti
			}
			if !isName(name) {
				return nil, fmt.Errorf("%q: placeholder %s is not a name of a-z, 0-9 and _ starting with a letter", p, s)
			}
			for _, n := range t.names {
				if n == name {
					return nil, fmt.Errorf("%q: placeholder {%s} appears twice", p, name)
				}
			}
			if len(t.names) == maxCaptures {
				return nil, fmt.Errorf("%q: more than %d placeholders", p, maxCaptures)
			}
			l.capture = len(t.names)
			t.names = append(t.names, name)
			switch name {
			case "sensor":
				t.sensor = l.capture
			case "kind":
				t.kind = l.capture
			}
		case strings.ContainsAny(s, "{}"):
			return nil, fmt.Errorf("%q: a placeholder must be a whole level, not %q", p, s)
		case strings.ContainsAny(s, "+#"):
			return nil, fmt.Errorf("%q: wildcard must be a whole level, not %q", p, s)
		default:
			l.kind, l.lit = levelLiteral, s
		}
		if l.kind == levelMulti || l.kind == levelHash {
			if t.multi >= 0 {
				return nil, fmt.Errorf("%q: at most one multi-level placeholder or #", p)
			}
			t.multi = i
		}
		t.levels = append(t.levels, l)
	}
	return t, nil
}

// match reports whether topic matches t and fills c with the captures.
// It does not allocate: captures are substrings of topic.
func (t *template) match(topic string, c *captures) bool {
	if strings.HasPrefix(topic, "$") && t.levels[0].kind != levelLiteral {
		return false
	}
	front := len(t.levels)
	if t.multi >= 0 {
		front = t.multi
	}
	pos := 0 // start of the next level in topic; -1 once every level is used
	for i := 0; i < front; i++ {
		if pos < 0 {
			return false
		}
		var lv string
		if j := strings.IndexByte(topic[pos:], '/'); j < 0 {
			lv, pos = topic[pos:], -1
		} else {
			lv, pos = topic[pos:pos+j], pos+j+1
		}
		if !t.levels[i].accept(lv, c) {
			return false
		}
	}
	if t.multi < 0 {
		return pos < 0
	}
	if pos < 0 { // no level left for the multi-level part
		return t.levels[t.multi].kind == levelHash && t.multi == len(t.levels)-1
	}
	end := len(topic)
	for i := len(t.levels) - 1; i > t.multi; i-- {
		j := strings.LastIndexByte(topic[pos:end], '/')
		if j < 0 {
			return false
		}
		if !t.levels[i].accept(topic[pos+j+1:end], c) {
			return false
		}
		end = pos + j
	}
	if l := t.levels[t.multi]; l.kind == levelMulti {
		c[l.capture] = topic[pos:end]
	}
	return true
}

// isName reports whether s is a capture name: [a-z][a-z0-9_]*.
func isName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// index returns the capture index of name, -1 when the template has none.
func (t *template) index(name string) int {
	for i, n := range t.names {
		if n == name {
			return i
		}
	}
	return -1
}

func (l *level) accept(lv string, c *captures) bool {
	switch l.kind {
	case levelLiteral:
		return lv == l.lit
	case levelCapture:
		c[l.capture] = lv
	}
	return true
}
