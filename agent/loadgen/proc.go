package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Proc is one sample of a local process, from /proc/<pid>.
type Proc struct {
	CPU     time.Duration // user + system time so far
	RSS     int64         // resident set now, bytes (VmRSS)
	PeakRSS int64         // high-water mark since start, bytes (VmHWM)
	// RSS split: anonymous memory (Go heap, stacks) and file pages (the
	// bbolt mmap, the binary). File pages are reclaimable by the kernel.
	RSSAnon, RSSFile int64
	Threads          int
	FDs              int // open file descriptors
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 100

// ReadProc samples process pid (Linux only).
func ReadProc(pid int) (Proc, error) {
	var p Proc
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, fmt.Errorf("proc %d: %w", pid, err)
	}
	// Fields after the parenthesised command name; utime and stime are 14 and 15.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return p, fmt.Errorf("proc %d: stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return p, fmt.Errorf("proc %d: stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	p.CPU = time.Duration(ut+st) * time.Second / clockTick

	fh, err := os.Open(dir + "/status")
	if err != nil {
		return p, fmt.Errorf("proc %d: %w", pid, err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			p.RSS = n << 10
		case "VmHWM":
			p.PeakRSS = n << 10
		case "RssAnon":
			p.RSSAnon = n << 10
		case "RssFile":
			p.RSSFile = n << 10
		case "Threads":
			p.Threads = int(n)
		}
	}
	if ents, err := os.ReadDir(dir + "/fd"); err == nil {
		p.FDs = len(ents)
	}
	return p, nil
}

// Host is the machine's CPU time so far, summed over its CPUs (/proc/stat),
// and of it Steal, the time a virtual machine's CPUs wanted to run while the
// hypervisor ran other guests.
type Host struct {
	Total, Steal time.Duration
}

// ReadHost samples the machine's CPU times (Linux only).
func ReadHost() (Host, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Host{}, fmt.Errorf("host cpu: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal [guest guest_nice]:
	// guest time is already counted in user and nice
	if len(f) < 9 || f[0] != "cpu" {
		return Host{}, fmt.Errorf("host cpu: /proc/stat: unexpected first line %q", line)
	}
	var t [8]int64
	for i := range t {
		if t[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return Host{}, fmt.Errorf("host cpu: /proc/stat field %d: %w", i+1, err)
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	h := Host{Steal: tick(t[7])}
	for _, n := range t {
		h.Total += tick(n)
	}
	return h, nil
}

// StealShare is the share of the CPU time from h0 to h that the hypervisor
// gave to other guests; 0 when no time passed.
func (h Host) StealShare(h0 Host) float64 {
	if h.Total <= h0.Total {
		return 0
	}
	return float64(h.Steal-h0.Steal) / float64(h.Total-h0.Total)
}

// FindListener returns the pid of the local process listening on TCP port
// (IPv4 or IPv6), found through /proc/net/tcp* and the processes' open
// sockets. Processes of other users are not visible unless run as root.
func FindListener(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process listens on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range procs {
		fds, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && inodes[link] {
				return strconv.Atoi(filepath.Base(dir))
			}
		}
	}
	return 0, errors.New("the process listening on port " + strconv.Itoa(port) + " is not visible (another user?)")
}
