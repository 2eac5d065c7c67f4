package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Options configures a simulator run.
type Options struct {
	Broker   string  // "tcp://127.0.0.1:1883"
	Sensors  int     // number of sensors; zero means 20
	Rate     float64 // readings per second per sensor; zero means 1
	Seed     uint64
	Prefix   string // topic prefix; "" means "sensors" (topic prefix/{sensor}/{kind})
	QoS      byte
	ClientID string // "" means edgeagent-sim-<seed>
	Username string
	Password string
	// AnomalyRate is the chance per reading that a sensor starts an anomaly.
	// Zero means 1/3000; negative means none.
	AnomalyRate float64
	Logger      *slog.Logger
}

func (o *Options) ensureDefaults() {
	if o.Sensors <= 0 {
		o.Sensors = 20
	}
	if o.Rate <= 0 {
		o.Rate = 1
	}
	if o.Prefix == "" {
		o.Prefix = "sensors"
	}
	if o.ClientID == "" {
		o.ClientID = "edgeagent-sim-" + strconv.FormatUint(o.Seed, 10)
	}
	if o.AnomalyRate == 0 {
		o.AnomalyRate = 1.0 / 3000
	}
	if o.AnomalyRate < 0 {
		o.AnomalyRate = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Fleet returns the simulated sensors of opts.
func Fleet(n int, seed uint64, anomalyRate float64) []*Sensor {
	out := make([]*Sensor, n)
	for i := range out {
		out[i] = NewSensor(i, seed)
		out[i].AnomalyRate = anomalyRate
	}
	return out
}

// Run publishes readings until ctx ends. Each sensor publishes Rate times a
// second, spread evenly over the second. It reconnects after the broker drops it.
func Run(ctx context.Context, opts Options) error {
	opts.ensureDefaults()
	c := paho.NewClient(paho.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second).
		SetWriteTimeout(5 * time.Second))
	tok := c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("simulator: connect %s: %w", opts.Broker, err)
		}
	case <-ctx.Done():
		return nil
	}
	defer c.Disconnect(250)

	fleet := Fleet(opts.Sensors, opts.Seed, opts.AnomalyRate)
	total := float64(opts.Sensors) * opts.Rate
	interval := time.Duration(float64(time.Second) / total)
	if interval < 50*time.Microsecond {
		interval = 50 * time.Microsecond
	}
	perTick := int(math.Max(1, math.Round(total*interval.Seconds())))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	opts.Logger.Info("simulator publishing", "broker", opts.Broker, "sensors", opts.Sensors,
		"rate_per_sensor", opts.Rate, "qos", opts.QoS)
	next := 0
	buf := make([]byte, 0, 96)
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			for range perTick {
				s := fleet[next]
				next = (next + 1) % len(fleet)
				v, ok := s.Next(now)
				if !ok {
					continue
				}
				buf = Payload(buf[:0], v, now)
				t := c.Publish(opts.Prefix+"/"+s.ID+"/"+s.Kind, opts.QoS, false, append([]byte(nil), buf...))
				if opts.QoS > 0 {
					if !t.WaitTimeout(5*time.Second) || t.Error() != nil {
						if errors.Is(ctx.Err(), context.Canceled) {
							return nil
						}
						opts.Logger.Warn("simulator publish failed", "sensor", s.ID, "err", t.Error())
					}
				}
			}
		}
	}
}

// Payload appends the JSON reading {"value":v,"ts":ms} to b.
func Payload(b []byte, v float64, t time.Time) []byte {
	b = append(b, `{"value":`...)
	b = strconv.AppendFloat(b, math.Round(v*1000)/1000, 'f', -1, 64)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, t.UnixMilli(), 10)
	return append(b, '}')
}
