package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// progressing is the watchdog's health: nil while every pipeline shard with
// work queued has moved within stall and the storage writer is healthy. An
// error withholds the WATCHDOG=1 ping, so systemd restarts a wedged agent.
func (a *App) progressing(stall time.Duration) error {
	if a.pipeline != nil {
		if err := a.pipeline.Stalled(stall); err != nil {
			return err
		}
	}
	if a.store != nil {
		if err := a.store.Ready(); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
	}
	return nil
}

// stallFor is how long a shard may sit on queued readings before the
// watchdog pings stop: the watchdog timeout itself (so a wedge is acted on
// within about twice WatchdogSec), at least 10s so a slow SD-card commit is
// not mistaken for a hang.
func stallFor(watchdog time.Duration) time.Duration { return max(watchdog, 10*time.Second) }

// statusEvery is how often STATUS= is refreshed: every 5s, or every watchdog
// timeout when that is shorter.
func statusEvery(watchdog time.Duration) time.Duration {
	if watchdog > 0 && watchdog < 5*time.Second {
		return watchdog
	}
	return 5 * time.Second
}

// Metric names the status line reads from the App's registry. A missing
// metric leaves its part out.
const (
	metricProcessed = "edgeagent_readings_processed_total"
	metricSensors   = "edgeagent_sensors"
	metricClients   = "edgeagent_mqtt_clients_connected"
	metricExternal  = "edgeagent_mqtt_external_connected"
	metricQueue     = "edgeagent_pipeline_queue_depth"
	metricUplink    = "edgeagent_upstream_connected"
)

// statusLine builds systemd's one-line STATUS= from the metrics registry:
// "12.5 readings/s, 40 sensors, 3 clients, queue 0, uplink connected".
// Not safe for concurrent use: the watchdog loop owns it.
type statusLine struct {
	g      prometheus.Gatherer
	uplink bool // an uplink is configured
	now    func() time.Time

	lastN float64
	lastT time.Time
}

func newStatusLine(g prometheus.Gatherer, uplink bool) *statusLine {
	s := &statusLine{g: g, uplink: uplink, now: time.Now}
	s.lastN, _ = s.values()[metricProcessed]
	s.lastT = s.now()
	return s
}

func (s *statusLine) values() map[string]float64 {
	mfs, err := s.g.Gather()
	if err != nil && len(mfs) == 0 {
		return nil
	}
	v := make(map[string]float64, 6)
	for _, mf := range mfs {
		switch name := mf.GetName(); name {
		case metricProcessed, metricSensors, metricClients, metricExternal, metricQueue, metricUplink:
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += value(m)
			}
			v[name] = sum
		}
	}
	return v
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// String advances the rate window and returns the status line.
func (s *statusLine) String() string {
	v := s.values()
	now := s.now()
	var parts []string
	if n, ok := v[metricProcessed]; ok {
		rate := 0.0
		if dt := now.Sub(s.lastT).Seconds(); dt > 0 && n >= s.lastN {
			rate = (n - s.lastN) / dt
		}
		s.lastN, s.lastT = n, now
		parts = append(parts, fmt.Sprintf("%.1f readings/s", rate))
	}
	if n, ok := v[metricSensors]; ok {
		parts = append(parts, fmt.Sprintf("%.0f sensors", n))
	}
	if n, ok := v[metricClients]; ok {
		parts = append(parts, fmt.Sprintf("%.0f clients", n))
	}
	if n, ok := v[metricExternal]; ok {
		parts = append(parts, "broker "+upDown(n))
	}
	if n, ok := v[metricQueue]; ok {
		parts = append(parts, fmt.Sprintf("queue %.0f", n))
	}
	switch n, ok := v[metricUplink]; {
	case !s.uplink:
		parts = append(parts, "uplink off")
	case ok:
		parts = append(parts, "uplink "+upDown(n))
	}
	return strings.Join(parts, ", ")
}

func upDown(v float64) string {
	if v > 0 {
		return "connected"
	}
	return "disconnected"
}
