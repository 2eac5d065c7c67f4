package ingest

import (
	"strings"
	"testing"
)

var templateTests = []struct {
	pattern, topic string
	match          bool
	caps           map[string]string
}{
	{"sensors/{sensor}/{kind}", "sensors/t1/temp", true, map[string]string{"sensor": "t1", "kind": "temp"}},
	{"sensors/{sensor}/{kind}", "sensors/t1", false, nil},
	{"sensors/{sensor}/{kind}", "sensors/t1/temp/x", false, nil},
	{"sensors/{sensor}/{kind}", "sensor/t1/temp", false, nil},
	{"sensors/{sensor}/{kind}", "sensors//", true, map[string]string{"sensor": "", "kind": ""}},
	{"sensors/{sensor}", "sensors/a b/ü", false, nil},
	{"sensors/{sensor}", "sensors/a b", true, map[string]string{"sensor": "a b"}},
	{"{sensor}", "x", true, map[string]string{"sensor": "x"}},
	{"{sensor}", "$SYS", false, nil},
	{"{sensor}", "", true, map[string]string{"sensor": ""}},
	{"$SYS/{sensor}", "$SYS/x", true, map[string]string{"sensor": "x"}},
	{"home/{sensor+}", "home/a/b/c", true, map[string]string{"sensor": "a/b/c"}},
	{"home/{sensor+}", "home/a", true, map[string]string{"sensor": "a"}},
	{"home/{sensor+}", "home", false, nil},
	{"home/{sensor+}", "home/", true, map[string]string{"sensor": ""}},
	{"{sensor+}/state", "a/b/state", true, map[string]string{"sensor": "a/b"}},
	{"{sensor+}/state", "state", false, nil},
	{"{sensor+}/state", "/state", true, map[string]string{"sensor": ""}},
	{"{sensor+}/state", "$SYS/a/state", false, nil},
	{"n/{sensor+}/{kind}/state", "n/a/b/temp/state", true, map[string]string{"sensor": "a/b", "kind": "temp"}},
	{"n/{sensor+}/{kind}/state", "n/temp/state", false, nil},
	{"n/{sensor+}/{kind}/state", "n/a/temp/stat", false, nil},
	{"n/{kind}/{sensor+}", "n/t/a/b", true, map[string]string{"sensor": "a/b", "kind": "t"}},
	{"tele/+/{sensor}/#", "tele/x/s", true, map[string]string{"sensor": "s"}},
	{"tele/+/{sensor}/#", "tele/x/s/a/b", true, map[string]string{"sensor": "s"}},
	{"tele/+/{sensor}/#", "tele/x", false, nil},
	{"tele/+/{sensor}/#", "tele", false, nil},
	{"#", "anything/at/all", true, nil},
	{"#", "$SYS/x", false, nil},
	{"a/+/{sensor}", "a//s", true, map[string]string{"sensor": "s"}},
	{"a/+/{sensor}", "a/s", false, nil},
}

func TestTemplate_match(t *testing.T) {
	for _, tt := range templateTests {
		tm, err := parseTemplate(tt.pattern)
		if err != nil {
			t.Fatalf("parseTemplate(%q): %v", tt.pattern, err)
		}
		var c captures
		if got := tm.match(tt.topic, &c); got != tt.match {
			t.Errorf("%q.match(%q) = %v; want %v", tt.pattern, tt.topic, got, tt.match)
			continue
		}
		for i, name := range tm.names {
			if want, ok := tt.caps[name]; ok && c[i] != want {
				t.Errorf("%q.match(%q): {%s} = %q; want %q", tt.pattern, tt.topic, name, c[i], want)
			}
		}
	}
}

// mqttMatch is the MQTT topic filter rule, written plainly, with captures.
func mqttMatch(pattern, topic string) (map[string]string, bool) {
	if strings.HasPrefix(topic, "$") && !strings.HasPrefix(pattern, "$") {
		// only a literal first level matches a '$' topic
		first, _, _ := strings.Cut(pattern, "/")
		if first == "+" || first == "#" || strings.HasPrefix(first, "{") {
			return nil, false
		}
	}
	p, tp := strings.Split(pattern, "/"), strings.Split(topic, "/")
	caps := map[string]string{}
	var rec func(i, j int) bool
	rec = func(i, j int) bool {
		if i == len(p) {
			return j == len(tp)
		}
		switch l := p[i]; {
		case l == "#":
			return true
		case strings.HasSuffix(l, "+}"):
			for k := j + 1; k <= len(tp); k++ {
				if rec(i+1, k) {
					caps[l[1:len(l)-2]] = strings.Join(tp[j:k], "/")
					return true
				}
			}
			return false
		case j == len(tp):
			return false
		case l == "+":
			return rec(i+1, j+1)
		case strings.HasPrefix(l, "{"):
			if rec(i+1, j+1) {
				caps[l[1:len(l)-1]] = tp[j]
				return true
			}
			return false
		default:
			return l == tp[j] && rec(i+1, j+1)
		}
	}
	return caps, rec(0, 0)
}

// FuzzTemplate checks the matcher against the plain MQTT rule for the
// patterns of the table.
func FuzzTemplate(f *testing.F) {
	for i, tt := range templateTests {
		f.Add(i, tt.topic)
	}
	f.Fuzz(func(t *testing.T, i int, topic string) {
		if i < 0 {
			i = -i
		}
		pattern := templateTests[i%len(templateTests)].pattern
		tm, err := parseTemplate(pattern)
		if err != nil {
			t.Fatal(err)
		}
		var c captures
		got := tm.match(topic, &c)
		wantCaps, want := mqttMatch(pattern, topic)
		if got != want {
			t.Fatalf("%q.match(%q) = %v; want %v", pattern, topic, got, want)
		}
		if !got {
			return
		}
		for k, name := range tm.names {
			if c[k] != wantCaps[name] {
				t.Fatalf("%q.match(%q): {%s} = %q; want %q", pattern, topic, name, c[k], wantCaps[name])
			}
		}
	})
}
