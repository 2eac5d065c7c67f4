package broker

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	connections  prometheus.Counter
	authFailures prometheus.Counter
	rejected     prometheus.Counter
	dropped      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, connected func() float64) *metrics {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edgeagent_mqtt_clients_connected",
		Help: "MQTT clients currently connected to the embedded broker.",
	}, connected)
	return &metrics{
		connections: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_mqtt_connections_total",
			Help: "MQTT connections accepted by the embedded broker (CONNECT authenticated).",
		}),
		authFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_mqtt_auth_failures_total",
			Help: "MQTT CONNECTs refused: unknown user, wrong password or anonymous not allowed.",
		}),
		rejected: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_mqtt_publish_rejected_total",
			Help: "Sensor publishes not acknowledged because the agent could not make them durable.",
		}),
		dropped: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_mqtt_messages_dropped_total",
			Help: "Messages the broker dropped for a subscriber whose outbound queue was full.",
		}),
	}
}

// ingestHook hands every client PUBLISH to the Handler before mochi writes
// the PUBACK, and keeps the connection metrics.
type ingestHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *ingestHook) ID() string { return "edgeagent-ingest" }

func (h *ingestHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnSessionEstablished || b == mqtt.OnPublishDropped || b == mqtt.OnWillSent ||
		b == mqtt.OnDisconnect
}

// OnDisconnect stops the client's acker: its read loop has ended, so no
// publish of it comes any more, and acknowledgements could not be sent.
func (h *ingestHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.b.ackers.stop(cl)
}

// OnWillSent hands a client's last will to the Handler: mochi publishes wills
// without OnPublish, and a will (Tasmota's LWT "Offline", ESPHome's status
// "offline") is how a device that lost power or network says so. There is
// no publisher to acknowledge, so it goes as QoS 0 and an error is only logged.
// It is news, not a replay: Retained is false even when the will is retained.
func (h *ingestHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	b := h.b
	if b.opts.Handler == nil || strings.HasPrefix(pk.TopicName, "$") {
		return
	}
	err := handle(b.ctx, b.opts.Handler, Message{Topic: pk.TopicName, Payload: pk.Payload, ClientID: cl.ID})
	if err != nil {
		b.rejectLog.log("mqtt will not ingested", "client", cl.ID, "topic", pk.TopicName, "err", err)
	}
}

func (h *ingestHook) OnSessionEstablished(*mqtt.Client, packets.Packet) {
	h.b.metrics.connections.Inc()
}

func (h *ingestHook) OnPublishDropped(*mqtt.Client, packets.Packet) {
	h.b.metrics.dropped.Inc()
}

// OnPublish runs on the publisher's read goroutine. A QoS 1 publish that
// nobody else could receive goes to the client's acker, which acknowledges
// it once durable while this goroutine reads on (mochi writes no PUBACK for
// ErrRejectPacket). Any other publish is handled here: a nil result lets
// mochi acknowledge and fan out; an error refuses the message (refuse).
func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	b := h.b
	if cl.Net.Inline || strings.HasPrefix(pk.TopicName, "$") {
		return pk, nil
	}
	if b.opts.Handler == nil {
		b.skipFanOut(&pk)
		return pk, nil
	}
	m := Message{
		Topic:    pk.TopicName,
		Payload:  pk.Payload,
		QoS:      min(pk.FixedHeader.Qos, 1),
		Retained: pk.FixedHeader.Retain,
		ClientID: cl.ID,
	}
	if pk.FixedHeader.Qos == 1 && b.unheard(&pk) {
		if a := b.ackers.hold(cl, true); a != nil {
			a.take(pk, m)
			return pk, packets.ErrRejectPacket
		}
	}
	if pk.FixedHeader.Qos > 0 {
		b.ackers.drain(cl) // mochi acknowledges this one when we return: the acker's first
	}
	ctx := b.ctx
	if m.QoS > 0 && b.opts.AckTimeout > 0 {
		// handle waits at once, before the commit: a lazy deadline
		// (publishCtx) would make its timer all the same
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.opts.AckTimeout)
		defer cancel()
	}
	if err := handle(ctx, b.opts.Handler, m); err != nil {
		return pk, b.refuse(cl, pk.TopicName, pk.FixedHeader.Qos, err)
	}
	b.skipFanOut(&pk)
	return pk, nil
}

// refuse counts and logs a publish that is not durable and returns what
// OnPublish returns for it: MQTT 5 QoS 1 publishers get a PUBACK with
// reason 0x83; 3.1.1 (and QoS 2) publishers are disconnected so they resend
// after reconnecting; QoS 0 is dropped.
func (b *Broker) refuse(cl *mqtt.Client, topic string, qos byte, err error) error {
	b.metrics.rejected.Inc()
	b.rejectLog.log("mqtt publish refused", "client", cl.ID, "topic", topic, "qos", qos, "err", err)
	switch {
	case qos == 0:
	case qos == 1 && cl.Properties.ProtocolVersion == 5:
		return packets.ErrImplementationSpecificError // negative PUBACK
	default:
		cl.Stop(packets.ErrServerBusy) // 3.1.1 has no negative PUBACK: drop the link
	}
	return packets.ErrRejectPacket
}

// unheard reports whether nobody could receive pk: no client holds a
// subscription and pk is not retained. mochi counts a subscription right
// after indexing it and before writing the SUBACK, so a subscriber never
// misses a publish sent after its SUBACK. The count leaves out inline
// (in-process) subscriptions; this broker makes none.
func (b *Broker) unheard(pk *packets.Packet) bool {
	return !pk.FixedHeader.Retain && atomic.LoadInt64(&b.srv.Info.Subscriptions) == 0
}

// skipFanOut marks an unheard pk Ignore: mochi then acknowledges it as
// usual but skips its subscriber lookup, which walks the topic tree and
// allocates a set of four maps per publish even when it finds nobody. (The
// mark, not packets.CodeSuccessIgnore, because an error costs mochi as many
// allocations in errors.Is as the lookup.)
func (b *Broker) skipFanOut(pk *packets.Packet) {
	if b.unheard(pk) {
		pk.Ignore = true
	}
}

// demoteHandler lowers mochi's own log records: Info and Warn become Debug,
// Error becomes Warn. Our hooks log what an operator needs.
type demoteHandler struct{ h slog.Handler }

func demote(l slog.Level) slog.Level {
	if l >= slog.LevelError {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

func (d demoteHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return d.h.Enabled(ctx, demote(l))
}

func (d demoteHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return d.h.Handle(ctx, r)
}

func (d demoteHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return demoteHandler{d.h.WithAttrs(as)}
}

func (d demoteHandler) WithGroup(name string) slog.Handler {
	return demoteHandler{d.h.WithGroup(name)}
}
