package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/ingest"
)

// heldStore keeps every reading's commit open until release is closed.
type heldStore struct {
	release chan struct{}
	wrote   chan struct{}
}

func (s *heldStore) Write(rs []agent.Result, _ []agent.Alert) {
	commits := make([]*agent.Commit, len(rs))
	for i := range rs {
		commits[i] = rs[i].Commit
	}
	s.wrote <- struct{}{}
	go func() {
		<-s.release
		for _, c := range commits {
			c.Done(nil)
		}
	}()
}

func newHeldIntake(t *testing.T, ackTimeout time.Duration) (*agent.Intake, *heldStore, *prometheus.Registry) {
	t.Helper()
	dec, err := ingest.New(ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := &heldStore{release: make(chan struct{}), wrote: make(chan struct{}, 16)}
	reg := prometheus.NewRegistry()
	p := agent.NewPipeline(agent.PipelineOptions{Shards: 1, Store: st, Registerer: reg})
	p.Start()
	t.Cleanup(func() {
		close(st.release)
		p.Close(context.Background())
	})
	return agent.NewIntake(p, dec, ackTimeout), st, reg
}

// A durable message returns only once its readings are committed.
func TestIntake_durableWaitsForCommit(t *testing.T) {
	in, st, _ := newHeldIntake(t, 10*time.Second)
	ret := make(chan error, 1)
	go func() {
		ret <- in.Ingest(context.Background(), agent.Message{Topic: "sensors/a/t", Payload: []byte("21.5"), Durable: true})
	}()
	<-st.wrote
	select {
	case err := <-ret:
		t.Fatalf("Ingest returned %v before the commit", err)
	case <-time.After(50 * time.Millisecond):
	}
	st.release <- struct{}{} // not closed: the cleanup closes it
	if err := <-ret; err != nil {
		t.Fatalf("Ingest after the commit = %v", err)
	}
}

// A commit that does not come in time is refused with ErrCommitTimedOut and
// counted as ack_timeout, whether Intake's own bound or the caller's
// (the broker's) deadline ends the wait.
func TestIntake_durableTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ackTimeout time.Duration
		ctxTimeout time.Duration // 0: no deadline
	}{
		{"own bound", 30 * time.Millisecond, 0},
		{"caller's earlier deadline", 10 * time.Second, 30 * time.Millisecond},
		{"own bound before the caller's", 30 * time.Millisecond, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, st, reg := newHeldIntake(t, tc.ackTimeout)
			ctx := context.Background()
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			err := in.Ingest(ctx, agent.Message{Topic: "sensors/a/t", Payload: []byte("21.5"), Durable: true})
			<-st.wrote
			if !errors.Is(err, agent.ErrCommitTimedOut) {
				t.Fatalf("Ingest = %v; want ErrCommitTimedOut", err)
			}
			if got := rejected(t, reg, agent.ReasonAckTimeout); got != 1 {
				t.Errorf("rejected{reason=ack_timeout} = %v; want 1", got)
			}
		})
	}
}

func rejected(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "edgeagent_readings_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
