package api_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/api"
)

// BenchmarkHub_Observe measures what the pipeline pays per batch of 64
// results: with no viewer, and with 10 viewers reading as fast as they can
// (every result sent to every client: distinct sensors, no downsampling hit).
func BenchmarkHub_Observe(b *testing.B) {
	for _, clients := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			hub := benchHub(b, clients, "?rate=1000")
			rs := make([]agent.Result, 64)
			for i := range rs {
				rs[i] = agent.Result{Reading: agent.Reading{Sensor: fmt.Sprintf("s-%d", i), Kind: "temperature", Unit: "°C", Value: 21.5, Time: time.Now()},
					Raw: 21.5, Band: agent.Band{Lo: 20, Hi: 23}}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range rs {
					rs[j].Sensor = fmt.Sprintf("s-%d-%d", i, j) // distinct: never downsampled away
				}
				hub.Observe(rs, nil)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rs)), "ns/result")
			if hub.Clients() != clients {
				b.Fatalf("%d of %d clients left: dropped as too slow", hub.Clients(), clients)
			}
		})
	}
}

// BenchmarkHub_ObserveFiltered is the common case: one viewer watching a
// tenth of 1,000 sensors (a glob) at 2 readings/s each, while the pipeline
// observes every reading of every sensor.
func BenchmarkHub_ObserveFiltered(b *testing.B) {
	hub := benchHub(b, 1, "?sensor=sim-*-0%3F%3F&rate=2")
	rs := make([]agent.Result, 1000)
	for i := range rs {
		rs[i] = agent.Result{Reading: agent.Reading{Sensor: fmt.Sprintf("sim-%04d-%03d", i/10, i), Kind: "temperature", Unit: "°C", Value: 21.5, Time: time.Now()}, Raw: 21.5}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		hub.Observe(rs[i%10*100:i%10*100+100], nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/result")
}

// benchHub serves a Hub with viewers connected to /ws with query, each
// reading its socket as fast as it can; everything stops with b.
func benchHub(b *testing.B, viewers int, query string) *api.Hub {
	b.Helper()
	hub := api.NewHub(api.HubOptions{Buffer: 1 << 16, MaxRate: 1000})
	srv := httptest.NewServer(api.New(api.Options{Hub: hub}))
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() { cancel(); srv.Close(); _ = hub.Close() })
	for range viewers {
		c, _, err := websocket.Dial(ctx, wsURL(srv, query), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.CloseNow() })
		go func() {
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
	}
	for hub.Clients() != viewers {
		time.Sleep(time.Millisecond)
	}
	return hub
}
