package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/agent/config"
)

// BenchmarkEndToEnd publishes b.N JSON readings over loopback MQTT to a whole
// agent (broker, ingest, default detectors, bbolt with fsync) from 4 clients
// and waits until every one is processed (QoS 0) or acknowledged after its
// commit (QoS 1). A client's QoS 1 publishes wait one after another for their
// commit, so the QoS 1 run uses more clients to fill each group commit.
func BenchmarkEndToEnd(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			cfg, err := config.Parse(fmt.Appendf(nil, "gateway_id: bench\ndata_dir: %s\nmqtt: {listen: \"127.0.0.1:0\"}\nhttp: {listen: \"\"}\nlog: {level: error}\n",
				filepath.Join(b.TempDir(), "data")))
			if err != nil {
				b.Fatal(err)
			}
			app := NewApp(cfg, AppOptions{})
			if err := app.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer app.Close()
			const sensors = 1000
			clients := 4
			if qos == 1 {
				clients = 32
			}
			cs := make([]paho.Client, clients)
			for i := range cs {
				cs[i] = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + app.MQTTAddr()).
					SetClientID(fmt.Sprint("bench-", i)).SetMaxResumePubInFlight(1024))
				if tok := cs[i].Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					b.Fatal(tok.Error())
				}
				defer cs[i].Disconnect(50)
			}
			ts := time.Now().Add(-time.Hour).UnixMilli()
			before := app.pipeline.Stats().Processed
			b.ReportAllocs()
			b.ResetTimer()
			done := make(chan error, clients)
			for ci, c := range cs {
				go func() {
					var last paho.Token
					for i := ci; i < b.N; i += clients {
						payload := fmt.Appendf(nil, `{"value":%d.5,"ts":%d}`, i%100, ts+int64(i))
						last = c.Publish(fmt.Sprintf("sensors/s%04d/temperature", i%sensors), qos, false, payload)
					}
					if last != nil && (!last.WaitTimeout(2*time.Minute) || last.Error() != nil) {
						done <- fmt.Errorf("last publish: %v", last.Error())
						return
					}
					done <- nil
				}()
			}
			for range clients {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			for app.pipeline.Stats().Processed-before < uint64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}
