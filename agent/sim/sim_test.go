package sim

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/broker/mosquittotest"
)

func TestSensor_sameSeedSameReadings(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := Fleet(5, 42, 0.01), Fleet(5, 42, 0.01)
	for i := range 2000 {
		at := t0.Add(time.Duration(i) * time.Second)
		for s := range a {
			va, oka := a[s].Next(at)
			vb, okb := b[s].Next(at)
			if va != vb || oka != okb {
				t.Fatalf("sensor %d reading %d: %v/%v vs %v/%v", s, i, va, oka, vb, okb)
			}
		}
	}
}

func TestSensor_Inject(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := NewSensor(0, 1) // temperature: 21 ± 3 daily, σ 0.15
	var last float64
	for i := range 100 {
		last, _ = s.Next(t0.Add(time.Duration(i) * time.Second))
	}
	at := t0.Add(100 * time.Second)
	s.Inject(Spike, at, time.Second)
	if v, _ := s.Next(at); v-last < 2 && last-v < 2 {
		t.Errorf("spike: %v after %v; want a jump of several σ", v, last)
	}
	s.Inject(Stuck, at.Add(time.Second), time.Minute)
	first, _ := s.Next(at.Add(time.Second))
	for i := 2; i < 30; i++ {
		if v, _ := s.Next(at.Add(time.Duration(i) * time.Second)); v != first {
			t.Fatalf("stuck sensor moved: %v then %v", first, v)
		}
	}
	s.Inject(Silence, at.Add(time.Minute), time.Minute)
	if _, ok := s.Next(at.Add(61 * time.Second)); ok {
		t.Error("silent sensor published")
	}
	if _, ok := s.Next(at.Add(3 * time.Minute)); !ok {
		t.Error("sensor still silent after the injected silence ended")
	}
}

func TestPayload(t *testing.T) {
	b := Payload(nil, 21.73456, time.UnixMilli(1732800000123))
	var m struct {
		Value float64 `json:"value"`
		TS    int64   `json:"ts"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Value != 21.735 || m.TS != 1732800000123 {
		t.Errorf("Payload = %s (%+v, %v)", b, m, err)
	}
}

// TestRun publishes to a real Mosquitto and counts what a subscriber gets.
func TestRun(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	var mu sync.Mutex
	seen := map[string]int{}
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(mq.URL()).SetClientID("counter"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(50)
	sub.Subscribe("plant/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		seen[m.Topic()]++
		mu.Unlock()
	}).WaitTimeout(5 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := Run(ctx, Options{Broker: mq.URL(), Sensors: 5, Rate: 10, Prefix: "plant", QoS: 1, AnomalyRate: -1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 5 {
		t.Fatalf("topics seen = %v; want 5 sensors", seen)
	}
	for topic, n := range seen {
		parts := strings.Split(topic, "/")
		if len(parts) != 3 || !strings.HasPrefix(parts[1], "sim-"+parts[2]) || n < 8 {
			t.Errorf("topic %s got %d readings; want plant/sim-<kind>-NNN/<kind> at about 10/s", topic, n)
		}
	}
}
