package agent_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/anomaly"
	"github.com/edgeagent/edgeagent/agent/ingest"
)

// BenchmarkIntake_Ingest: the agent's pipeline after the broker at QoS 0,
// as the publishers' read goroutines drive it: decode one JSON reading of
// one of 1000 sensors, submit it to its shard, run the default detectors.
// No storage. Eight publishers on the benchmark's cores; an op is one
// reading, timed until every shard has processed it.
func BenchmarkIntake_Ingest(b *testing.B) {
	dec, err := ingest.New(ingest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	p := agent.NewPipeline(agent.PipelineOptions{
		NewStage: func(int) agent.Stage {
			e, err := anomaly.New(anomaly.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return e
		},
	})
	p.Start()
	defer p.Close(context.Background())
	in := agent.NewIntake(p, dec, 0)

	const sensors = 1000
	topics := make([]string, sensors)
	for i := range topics {
		topics[i] = "sensors/s" + strconv.Itoa(i) + "/temperature"
	}
	payload := func(i int) []byte { // no ts: the reading's time is its arrival
		return []byte(`{"value":` + strconv.FormatFloat(20+float64(i%97)/10, 'f', 1, 64) + `}`)
	}
	ctx := context.Background()
	for i, tp := range topics { // sensors exist before timing starts
		if err := in.Ingest(ctx, agent.Message{Topic: tp, Payload: payload(i)}); err != nil {
			b.Fatal(err)
		}
	}
	for p.Stats().Processed < sensors {
		time.Sleep(time.Millisecond)
	}
	var next atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		msgs := make([][]byte, 64) // fresh payloads, as mochi allocates one per packet
		for i := range msgs {
			msgs[i] = payload(i)
		}
		i := int(next.Add(7919))
		for pb.Next() {
			i++
			if err := in.Ingest(ctx, agent.Message{Topic: topics[i%sensors], Payload: msgs[i%len(msgs)]}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for p.Stats().Processed < uint64(sensors+b.N) {
		time.Sleep(50 * time.Microsecond)
	}
	b.StopTimer()
	if st := p.Stats(); st.Rejected != 0 {
		b.Fatalf("rejected %d readings", st.Rejected)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}
