package loadgen

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseSamples_sumsAcrossLabels(t *testing.T) {
	text := `# HELP edgeagent_readings_rejected_total Readings rejected.
# TYPE edgeagent_readings_rejected_total counter
edgeagent_readings_rejected_total{reason="not_numeric"} 3
edgeagent_readings_rejected_total{reason="too_large",x="a b}"} 4
edgeagent_readings_rejected_total_other 100
edgeagent_readings_processed_total 1.2345e+06
process_resident_memory_bytes 2.4e+07 1700000000000
`
	s, err := ParseSamples(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sum("edgeagent_readings_rejected_total"); got != 7 {
		t.Errorf("rejected sum = %v; want 7 (the _other metric is a different name)", got)
	}
	if got := s.Sum("edgeagent_readings_processed_total"); got != 1234500 {
		t.Errorf("processed = %v", got)
	}
	if got := s.Sum("process_resident_memory_bytes"); got != 2.4e7 {
		t.Errorf("rss = %v (timestamp must be ignored)", got)
	}
	if _, err := ParseSamples(strings.NewReader("broken line\n")); err == nil {
		t.Error("want an error for a line without a number")
	}
}

func TestReadProc_self(t *testing.T) {
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	for time.Since(start) < 30*time.Millisecond {
	}
	p, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.PeakRSS < 8<<20 || p.RSS <= 0 || p.RSSAnon <= 0 || p.Threads < 1 || p.FDs < 3 {
		t.Errorf("implausible sample of this process: %+v", p)
	}
	if p.CPU <= 0 {
		t.Errorf("CPU = %v after a busy loop", p.CPU)
	}
	_ = buf[len(buf)-1]
}

// The machine's CPU time advances with the clock (on every CPU, idle or
// not), and steal is part of it.
func TestReadHost_advancesWithTheClock(t *testing.T) {
	h0, err := ReadHost()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	h, err := ReadHost()
	if err != nil {
		t.Fatal(err)
	}
	if d := h.Total - h0.Total; d < 100*time.Millisecond || h.Steal < h0.Steal || h.Steal-h0.Steal > d {
		t.Errorf("over 200 ms: total %v, steal %v", d, h.Steal-h0.Steal)
	}
	if s := h.StealShare(h0); s < 0 || s > 1 {
		t.Errorf("steal share %v", s)
	}
	if s := h0.StealShare(h0); s != 0 {
		t.Errorf("steal share over no time = %v", s)
	}
}

func TestFindListener_findsThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, err := FindListener(ln.Addr().(*net.TCPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() {
		t.Errorf("pid = %d; want this process, %d", pid, os.Getpid())
	}
	ln.Close()
	if _, err := FindListener(ln.Addr().(*net.TCPAddr).Port); err == nil {
		t.Error("found a listener on a closed port")
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if q := Quantile(d, 0.5); q != 50*time.Millisecond {
		t.Errorf("p50 = %v", q)
	}
	if q := Quantile(d, 0.99); q != 99*time.Millisecond {
		t.Errorf("p99 = %v", q)
	}
	if Quantile(nil, 0.5) != 0 {
		t.Error("empty quantile")
	}
}
