package broker

import (
	"context"
	"sync/atomic"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// BenchmarkBroker_throughput: one paho client publishing over loopback TCP
// into a counting Handler. QoS 1 keeps up to 1024 publishes in flight.
func BenchmarkBroker_throughput(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run([]string{"qos0", "qos1"}[qos], func(b *testing.B) {
			var n atomic.Int64
			done := make(chan struct{})
			var target int64
			br := startBroker(b, Options{AllowAnonymous: true, Handler: func(context.Context, Message) (Pending, error) {
				if n.Add(1) == atomic.LoadInt64(&target) {
					close(done)
				}
				return nil, nil
			}})
			c, _ := connect(b, tcpURL(br), "bench", func(o *paho.ClientOptions) { o.SetWriteTimeout(0) })
			payload := []byte(`{"value":21.5,"ts":1700000000000}`)
			atomic.StoreInt64(&target, int64(b.N))
			window := make(chan paho.Token, 1024)
			b.ResetTimer()
			go func() {
				for tok := range window {
					tok.Wait()
				}
			}()
			for range b.N {
				window <- c.Publish("sensors/bench/temperature", qos, false, payload)
			}
			close(window)
			<-done
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
