package ingest

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// benchDecode decodes payload on topic b.N times into a reused slice and
// reports readings per second and allocations per reading.
func benchDecode(b *testing.B, d *Decoder, topic string, payload []byte) {
	b.Helper()
	out, err := d.Decode(topic, payload, arrived, nil)
	if err != nil || len(out) == 0 {
		b.Fatalf("Decode(%q) = %v, %v", payload, out, err)
	}
	perMsg := len(out)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, _ = d.Decode(topic, payload, arrived, out[:0])
	}
	b.StopTimer()
	readings := float64(b.N * perMsg)
	b.ReportMetric(readings/b.Elapsed().Seconds(), "readings/s")
	b.ReportMetric(float64(testing.AllocsPerRun(100, func() { out, _ = d.Decode(topic, payload, arrived, out[:0]) }))/float64(perMsg), "allocs/reading")
}

func BenchmarkDecodeJSON(b *testing.B) {
	payload := []byte(`{"value":21.7,"ts":` + ms(-time.Second) + `}`)
	benchDecode(b, newTestDecoder(b), "sensors/t1/temp", payload)
}

func BenchmarkDecodeJSONRFC3339(b *testing.B) {
	payload := []byte(`{"value":21.7,"ts":"2024-11-28T11:59:59.5Z"}`)
	benchDecode(b, newTestDecoder(b), "sensors/t1/temp", payload)
}

func BenchmarkDecodeJSONNested(b *testing.B) {
	payload := []byte(`{"rssi":-67,"fw":"1.2.3","data":{"humidity":{"value":40},"temp":{"value":63.5},"time":"2024-11-28T11:59:00Z","unit":"°C"}}`)
	benchDecode(b, newTestDecoder(b), "json/boiler", payload)
}

func BenchmarkDecodeNumber(b *testing.B) {
	benchDecode(b, newTestDecoder(b), "sensors/t1/temp", []byte("21.7"))
}

func BenchmarkDecodeBatch(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("[")
	for i := 0; i < 50; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`{"value":` + strconv.FormatFloat(20+float64(i)/10, 'f', -1, 64) + `,"ts":` + ms(time.Duration(i-50)*time.Second) + `}`)
	}
	sb.WriteString("]")
	benchDecode(b, newTestDecoder(b), "sensors/t1/temp", []byte(sb.String()))
}

func BenchmarkDecodeBatchSensorField(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("[")
	for i := 0; i < 50; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`{"id":"s` + strconv.Itoa(i) + `","v":` + strconv.Itoa(i) + `}`)
	}
	sb.WriteString("]")
	benchDecode(b, newTestDecoder(b), "batch/temp", []byte(sb.String()))
}

// BenchmarkDecodeManyTopics puts the matching template last of 9.
func BenchmarkDecodeManyTopics(b *testing.B) {
	benchDecode(b, newTestDecoder(b), "sec/s", []byte(`{"value":1,"ts":1732795200}`))
}

func BenchmarkDecodeRejected(b *testing.B) {
	d := newTestDecoder(b)
	payload := []byte(`{"value":"abc"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode("sensors/t1/temp", payload, arrived, nil); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkDecodeParallel(b *testing.B) {
	d := newTestDecoder(b)
	payload := []byte(`{"value":21.7,"ts":` + ms(-time.Second) + `}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		out := make([]agent.Reading, 0, 1)
		for pb.Next() {
			out, _ = d.Decode("sensors/t1/temp", payload, arrived, out[:0])
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkStdlibJSON is the baseline the scanner replaces: encoding/json
// into a struct (no path configuration, no validation beyond syntax).
func BenchmarkStdlibJSON(b *testing.B) {
	payload := []byte(`{"value":21.7,"ts":` + ms(-time.Second) + `}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var v struct {
			Value *float64        `json:"value"`
			TS    json.RawMessage `json:"ts"`
		}
		if err := json.Unmarshal(payload, &v); err != nil || v.Value == nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkStdlibJSONMap is encoding/json into map[string]any, which a
// configurable field path would otherwise need.
func BenchmarkStdlibJSONMap(b *testing.B) {
	payload := []byte(`{"value":21.7,"ts":` + ms(-time.Second) + `}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var v map[string]any
		if err := json.Unmarshal(payload, &v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}
