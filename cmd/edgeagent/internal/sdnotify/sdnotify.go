// Package sdnotify speaks systemd's sd_notify protocol without cgo: it sends
// READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 datagrams to $NOTIFY_SOCKET and
// runs a watchdog loop that pings only while a health function says the
// service is really making progress, so a wedged process is restarted by
// systemd (WatchdogSec=) instead of merely a dead one.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notifier sends state datagrams to one notify socket. The zero value (and a
// Notifier for an empty socket) sends nothing and reports no error, so code
// outside systemd can call it unconditionally. Safe for concurrent use.
type Notifier struct {
	socket string
}

// New returns a Notifier for socket: a filesystem path, or "@name" for an
// abstract socket. An empty socket disables it.
func New(socket string) *Notifier { return &Notifier{socket: socket} }

// FromEnv returns a Notifier for $NOTIFY_SOCKET and unsets the variable, so
// child processes (none today) do not talk to systemd on our behalf.
func FromEnv() *Notifier {
	n := New(os.Getenv("NOTIFY_SOCKET"))
	_ = os.Unsetenv("NOTIFY_SOCKET")
	return n
}

// Enabled reports whether the Notifier has a socket to send to.
func (n *Notifier) Enabled() bool { return n != nil && n.socket != "" }

// Notify sends the newline-joined states ("READY=1", "STATUS=...") in one
// datagram. It does nothing when not Enabled.
func (n *Notifier) Notify(states ...string) error {
	if !n.Enabled() {
		return nil
	}
	for _, s := range states {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("sd_notify: state %q is not KEY=VALUE", s)
		}
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.socket, err)
	}
	return nil
}

// Ready tells systemd start-up is complete (Type=notify), with a status line.
func (n *Notifier) Ready(status string) error {
	if status == "" {
		return n.Notify("READY=1")
	}
	return n.Notify("READY=1", "STATUS="+oneLine(status))
}

// Status sets the one-line status `systemctl status` shows.
func (n *Notifier) Status(status string) error { return n.Notify("STATUS=" + oneLine(status)) }

// Watchdog is one keep-alive ping (WatchdogSec=).
func (n *Notifier) Watchdog() error { return n.Notify("WATCHDOG=1") }

// Stopping tells systemd shutdown has begun.
func (n *Notifier) Stopping() error { return n.Notify("STOPPING=1") }

// Reloading tells systemd a reload has begun; send Ready when it is done.
func (n *Notifier) Reloading() error { return n.Notify("RELOADING=1") }

// ExtendWhile asks systemd for by more time, every `every` until ctx ends
// (EXTEND_TIMEOUT_USEC=), so a start that is slow but progressing is not
// killed at TimeoutStartSec: systemd still waits at least that long, and
// times out only when by passes without a new message. by must be longer
// than every. It sends nothing when not Enabled, and returns when ctx ends.
func (n *Notifier) ExtendWhile(ctx context.Context, every, by time.Duration) {
	if !n.Enabled() {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = n.Notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(by.Microseconds(), 10))
		}
	}
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// WatchdogInterval reads $WATCHDOG_USEC (and $WATCHDOG_PID, which must be
// this process when set) and returns systemd's watchdog timeout; 0 when the
// watchdog is off or meant for another process.
func WatchdogInterval() (time.Duration, error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID %q: %w", pid, err)
		}
		if p != os.Getpid() {
			return 0, nil
		}
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC %q is not a positive number of microseconds", usec)
	}
	return time.Duration(u) * time.Microsecond, nil
}

// LoopOptions configures Loop. Zero values are documented per field.
type LoopOptions struct {
	// Notifier receives the pings and status lines. Nil: Loop returns at once.
	Notifier *Notifier
	// Timeout is systemd's watchdog timeout (WatchdogInterval). Pings are sent
	// every Timeout/3, so two may be lost before systemd acts. Zero: no
	// WATCHDOG=1 pings, only status lines.
	Timeout time.Duration
	// Healthy is checked before every ping; an error withholds the ping (and
	// is logged once per change), so systemd restarts a service that stays
	// unhealthy for Timeout. Nil means always healthy.
	Healthy func() error
	// Status returns the STATUS= line; nil sends none.
	Status func() string
	// StatusInterval is how often Status is sent; zero means 5s.
	StatusInterval time.Duration
	Logger         *slog.Logger // nil discards
}

// Loop pings the watchdog and refreshes the status until ctx ends. It is
// meant to run on one goroutine owned by the service's main function.
func Loop(ctx context.Context, o LoopOptions) {
	if !o.Notifier.Enabled() {
		return
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = 5 * time.Second
	}
	var pingC, statusC <-chan time.Time
	if o.Timeout > 0 {
		t := time.NewTicker(max(o.Timeout/3, time.Millisecond))
		defer t.Stop()
		pingC = t.C
	}
	if o.Status != nil {
		t := time.NewTicker(o.StatusInterval)
		defer t.Stop()
		statusC = t.C
	}
	var lastErr string
	ping := func() {
		if o.Healthy != nil {
			if err := o.Healthy(); err != nil {
				if err.Error() != lastErr {
					o.Logger.Error("watchdog: withholding ping, systemd restarts the service if this persists", "err", err)
					lastErr = err.Error()
				}
				return
			}
		}
		if lastErr != "" {
			o.Logger.Info("watchdog: healthy again, pinging")
			lastErr = ""
		}
		if err := o.Notifier.Watchdog(); err != nil {
			o.Logger.Warn("watchdog ping", "err", err)
		}
	}
	if pingC != nil {
		ping()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-pingC:
			ping()
		case <-statusC:
			if err := o.Notifier.Status(o.Status()); err != nil && !errors.Is(err, context.Canceled) {
				o.Logger.Warn("sd_notify status", "err", err)
			}
		}
	}
}
