package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Stream measures end-to-end latency from the agent's live WebSocket stream
// (/ws): for every reading message it records arrival time minus the
// reading's time "t". The generator stamps "ts" with the publish time, so
// this is publish → processed by the pipeline → streamed, at the stream's
// millisecond resolution (each figure is up to 1 ms high). Both ends must
// share a clock (same host).
type Stream struct {
	conn   *websocket.Conn
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	lat     []time.Duration
	since   time.Time
	readErr error
}

// OpenStream connects to wsURL (ws://host:port/ws?sensor=GLOB&rate=N) with
// an optional API token and starts recording; readings whose time is before
// Reset's argument are ignored.
func OpenStream(ctx context.Context, wsURL, token string) (*Stream, error) {
	protos := []string{"edgeagent.v1"}
	if token != "" {
		protos = append(protos, "token."+token)
	}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	conn, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{Subprotocols: protos})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("live stream %s: status %s: %w", wsURL, resp.Status, err)
		}
		return nil, fmt.Errorf("live stream %s: %w", wsURL, err)
	}
	conn.SetReadLimit(1 << 20)
	rctx, cancel := context.WithCancel(context.Background())
	s := &Stream{conn: conn, cancel: cancel, done: make(chan struct{}), since: time.Now()}
	go s.read(rctx)
	return s, nil
}

type streamMsg struct {
	Type    string `json:"type"`
	Reading struct {
		T int64 `json:"t"`
	} `json:"reading"`
}

func (s *Stream) read(ctx context.Context) {
	defer close(s.done)
	var m streamMsg
	for {
		_, data, err := s.conn.Read(ctx)
		now := time.Now()
		if err != nil {
			s.mu.Lock()
			if ctx.Err() == nil {
				s.readErr = err
			}
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		for line := range bytes.SplitSeq(data, []byte{'\n'}) {
			if len(line) == 0 || json.Unmarshal(line, &m) != nil || m.Type != "reading" {
				continue
			}
			t := time.UnixMilli(m.Reading.T)
			if t.Before(s.since) {
				continue
			}
			s.lat = append(s.lat, max(now.Sub(t), 0))
		}
		s.mu.Unlock()
	}
}

// Reset drops what was recorded and ignores readings older than since.
func (s *Stream) Reset(since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lat, s.since = s.lat[:0], since
}

// Close stops reading and returns the sorted latencies and any read error
// (for example: the agent dropped this client as too slow).
func (s *Stream) Close() ([]time.Duration, error) {
	s.cancel()
	<-s.done
	s.conn.Close(websocket.StatusNormalClosure, "")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.lat)
	slices.Sort(out)
	return out, s.readErr
}
