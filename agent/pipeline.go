package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PipelineOptions configures a Pipeline. The zero value is ready to use: it
// passes readings through unchanged and keeps nothing.
type PipelineOptions struct {
	// Shards is the number of goroutines that own sensor state. Zero means one per CPU.
	Shards int
	// QueueSize bounds the readings waiting per shard; a full queue blocks the
	// publisher (backpressure) instead of dropping. Zero means 4096.
	QueueSize int
	// MaxSensors caps distinct sensor ids; new ones beyond it are rejected.
	// Zero means 10,000.
	MaxSensors int
	// NewStage builds the per-shard stage (filters, detectors, alerts).
	// Nil passes readings through unchanged.
	NewStage func(shard int) Stage
	// Store persists results and alerts. Nil completes commits after processing.
	Store Store
	// Observers see every emitted result and alert (the live stream). Never block.
	Observers []Observer
	// TickInterval drives Stage.Tick (silence timers). Zero means 1s.
	TickInterval time.Duration
	// SnapshotInterval saves stage state this often; zero means 5m. States are
	// handed to SaveState, which is also called once at Close.
	SnapshotInterval time.Duration
	SaveState        func(states map[string][]byte) error
	// Gateway is stamped on alerts that carry none.
	Gateway string
	// Now is the gateway clock; nil means time.Now.
	Now        func() time.Time
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing
}

func (o *PipelineOptions) ensureDefaults() {
	if o.Shards <= 0 {
		o.Shards = runtime.GOMAXPROCS(0)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MaxSensors <= 0 {
		o.MaxSensors = 10000
	}
	if o.TickInterval <= 0 {
		o.TickInterval = time.Second
	}
	if o.SnapshotInterval <= 0 {
		o.SnapshotInterval = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// SensorInfo is what the pipeline knows of one sensor, copied out of its shard.
type SensorInfo struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind,omitempty"`
	Unit     string    `json:"unit,omitempty"`
	Value    float64   `json:"value"`
	Time     time.Time `json:"time"`
	Readings uint64    `json:"readings"`
	Rate     float64   `json:"rate"` // readings per second, smoothed
	Score    float64   `json:"score"`
	Detector string    `json:"detector,omitempty"`
	Band     Band      `json:"band"`
	Alerting bool      `json:"alerting"`
	Flags    Flags     `json:"flags"`
}

// Stats are the pipeline's running totals.
type Stats struct {
	Received   uint64 `json:"received"`
	Processed  uint64 `json:"processed"`
	Rejected   uint64 `json:"rejected"`
	Unmatched  uint64 `json:"unmatched"`
	Sensors    int    `json:"sensors"`
	QueueDepth int    `json:"queue_depth"`
}

// Stats returns the running totals; safe to call from any goroutine.
func (p *Pipeline) Stats() Stats {
	m := p.metrics
	return Stats{
		Received: m.nReceived.Load(), Processed: m.nProcessed.Load(),
		Rejected: m.nRejected.Load(), Unmatched: m.nUnmatched.Load(),
		Sensors: int(p.nsensors.Load()), QueueDepth: p.QueueDepth(),
	}
}

// Pipeline moves readings from ingest to the per-sensor stages, storage and
// observers. Readings are sharded by sensor id; one goroutine owns each
// shard's state, so per-sensor order is kept and no lock is taken per reading.
type Pipeline struct {
	opts    PipelineOptions
	shards  []*shard
	seed    maphash.Seed
	metrics *pipelineMetrics

	known    knownSet // admitted sensor ids (their hashes)
	newMu    sync.Mutex
	nsensors atomic.Int64

	mu      sync.RWMutex // held for reading while sending to a shard; Close takes it to close queues
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
	started atomic.Bool
}

// NewPipeline returns a pipeline that is not yet running; call Start.
func NewPipeline(opts PipelineOptions) *Pipeline {
	opts.ensureDefaults()
	p := &Pipeline{
		opts:    opts,
		seed:    maphash.MakeSeed(),
		stop:    make(chan struct{}),
		metrics: newPipelineMetrics(opts.Registerer),
	}
	for i := range opts.Shards {
		s := &shard{
			p:       p,
			id:      i,
			in:      make(chan Reading, opts.QueueSize),
			ctl:     make(chan func()),
			sensors: make(map[string]*sensorEntry),
		}
		if opts.NewStage != nil {
			s.stage = opts.NewStage(i)
			s.slotted, _ = s.stage.(SlotStage)
		}
		p.shards = append(p.shards, s)
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "edgeagent_sensors", Help: "Distinct sensors known to the pipeline.",
			}, func() float64 { return float64(p.nsensors.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "edgeagent_pipeline_queue_depth", Help: "Readings waiting in shard queues.",
			}, func() float64 { return float64(p.QueueDepth()) }),
		)
	}
	return p
}

// Restore hands a saved sensor state to its shard's stage. Call it before
// Start; sensors restored this way count as known.
func (p *Pipeline) Restore(sensor string, state []byte) error {
	if p.started.Load() {
		return errors.New("pipeline: restore after start")
	}
	s := p.shardFor(sensor)
	snap, ok := s.stage.(Snapshotter)
	if !ok {
		return nil
	}
	if err := snap.Restore(sensor, state); err != nil {
		return fmt.Errorf("restore sensor %q: %w", sensor, err)
	}
	p.admit(p.hash(sensor))
	return nil
}

// Start runs the shard goroutines. They stop when Close is called.
func (p *Pipeline) Start() {
	if !p.started.CompareAndSwap(false, true) {
		return
	}
	for _, s := range p.shards {
		s.progress.Store(p.opts.Now().UnixNano())
		p.wg.Go(s.run)
	}
}

// Metrics gives the ingest side the counters it shares with the pipeline.
func (p *Pipeline) Metrics() *pipelineMetrics { return p.metrics }

// Submit hands r to its sensor's shard, blocking while that shard's queue is
// full or until ctx ends. A reading of a new sensor beyond MaxSensors is
// rejected with ErrTooManySensors (and counted); after Close, ErrClosed.
// On error r.Commit has been completed, so callers need not.
func (p *Pipeline) Submit(ctx context.Context, r Reading) error {
	h := p.hash(r.Sensor)
	if !p.known.has(h) && !p.admit(h) {
		p.metrics.reject(ReasonTooManySensors)
		r.Commit.Done(nil) // bad input is acknowledged, not retried
		return fmt.Errorf("sensor %q: %w (max %d)", r.Sensor, ErrTooManySensors, p.opts.MaxSensors)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		p.metrics.reject(ReasonShuttingDown)
		r.Commit.Done(ErrClosed)
		return ErrClosed
	}
	in := p.shardAt(h).in
	// A queue with room takes r at once; only a full one needs the select
	// on ctx and stop, which locks all three channels.
	select {
	case in <- r:
		p.metrics.receivedOne()
		return nil
	default:
	}
	select {
	case in <- r:
		p.metrics.receivedOne()
		return nil
	case <-ctx.Done():
		r.Commit.Done(ctx.Err())
		return ctx.Err()
	case <-p.stop:
		p.metrics.reject(ReasonShuttingDown)
		r.Commit.Done(ErrClosed)
		return ErrClosed
	}
}

// admit registers a new sensor id (its hash h) if the cap allows.
func (p *Pipeline) admit(h uint64) bool {
	p.newMu.Lock()
	defer p.newMu.Unlock()
	if p.known.has(h) {
		return true
	}
	if p.nsensors.Load() >= int64(p.opts.MaxSensors) {
		return false
	}
	p.known.add(h)
	p.nsensors.Add(1)
	return true
}

func (p *Pipeline) hash(sensor string) uint64 { return maphash.String(p.seed, sensor) }

func (p *Pipeline) shardFor(sensor string) *shard { return p.shardAt(p.hash(sensor)) }

// shardAt is the shard of the sensor whose hash is h.
func (p *Pipeline) shardAt(h uint64) *shard { return p.shards[h%uint64(len(p.shards))] }

// knownSet holds the admitted sensor ids, which every Submit looks up: an
// open-addressing table of their 64-bit hashes (the one that picks the
// shard), read with atomic loads and written under the pipeline's newMu.
// sync.Map's Load was 2.7–4.4% of the agent's CPU in profiles at max rate
// (the id boxed and hashed, then a walk down its trie); this is 0.7%. Two ids with one hash would count as
// one sensor: with a per-process seed and 100,000 sensors the chance is
// about 1 in 10^9.
type knownSet struct {
	table atomic.Pointer[[]atomic.Uint64] // 0: empty slot; at most half full
	n     int                             // ids in it, under newMu
}

func (k *knownSet) has(h uint64) bool {
	t := k.table.Load()
	if t == nil {
		return false
	}
	h |= 1 // never 0
	mask := uint64(len(*t) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch (*t)[i].Load() {
		case h:
			return true
		case 0:
			return false
		}
	}
}

// add inserts h, which is not in the set; the caller holds newMu. A full
// table is copied into one twice the size, which readers then load; the old
// one is never written again, so a reader still on it misses only ids
// added since, and admit looks again under the lock.
func (k *knownSet) add(h uint64) {
	t := k.table.Load()
	if t == nil || 2*(k.n+1) > len(*t) {
		size := 1024
		if t != nil {
			size = 2 * len(*t)
		}
		nt := make([]atomic.Uint64, size)
		if t != nil {
			for i := range *t {
				if v := (*t)[i].Load(); v != 0 {
					insertHash(nt, v)
				}
			}
		}
		k.table.Store(&nt)
		t = &nt
	}
	insertHash(*t, h|1)
	k.n++
}

func insertHash(t []atomic.Uint64, h uint64) {
	mask := uint64(len(t) - 1)
	i := h & mask
	for t[i].Load() != 0 {
		i = (i + 1) & mask
	}
	t[i].Store(h)
}

// QueueDepth is the number of readings waiting in all shard queues.
func (p *Pipeline) QueueDepth() int {
	n := 0
	for _, s := range p.shards {
		n += len(s.in)
	}
	return n
}

// Sensors returns every known sensor, sorted by id, copied from the shards.
func (p *Pipeline) Sensors(ctx context.Context) ([]SensorInfo, error) {
	var out []SensorInfo
	for _, s := range p.shards {
		err := s.do(ctx, func() {
			for _, e := range s.sensors {
				out = append(out, e.info)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Inspect runs fn on the goroutine that owns sensor, with its shard's stage,
// and waits. It returns ErrNotFound for an unknown sensor.
func (p *Pipeline) Inspect(ctx context.Context, sensor string, fn func(info SensorInfo, st Stage)) error {
	if !p.known.has(p.hash(sensor)) {
		return fmt.Errorf("sensor %q: %w", sensor, ErrNotFound)
	}
	s := p.shardFor(sensor)
	var found bool
	err := s.do(ctx, func() {
		e, ok := s.sensors[sensor]
		if !ok {
			return
		}
		found = true
		fn(e.info, s.stage)
	})
	if err == nil && !found {
		err = fmt.Errorf("sensor %q: %w", sensor, ErrNotFound)
	}
	return err
}

// Reconfigure runs fn on every shard's goroutine with its stage (a config
// reload swapping rules) and hands the alerts fn returns to storage and the
// observers like any others. Readings keep flowing: each shard pauses only
// for its own fn. It stops at the first error.
func (p *Pipeline) Reconfigure(ctx context.Context, fn func(st Stage, alerts []Alert) ([]Alert, error)) error {
	for _, s := range p.shards {
		var ferr error
		err := s.do(ctx, func() {
			s.alerts, ferr = fn(s.stage, s.alerts[:0])
			s.emit(nil)
		})
		if err = errors.Join(err, ferr); err != nil {
			return fmt.Errorf("pipeline shard %d: %w", s.id, err)
		}
	}
	return nil
}

// Stalled reports the first shard that has work queued but has not made
// progress for longer than d: the watchdog stops pinging systemd then.
func (p *Pipeline) Stalled(d time.Duration) error {
	now := p.opts.Now().UnixNano()
	for _, s := range p.shards {
		last := s.progress.Load()
		if len(s.in) > 0 && time.Duration(now-last) > d {
			return fmt.Errorf("pipeline shard %d: no progress for %v with %d readings queued",
				s.id, time.Duration(now-last).Round(time.Millisecond), len(s.in))
		}
	}
	return nil
}

// Close stops intake, lets every shard drain its queue, snapshots stage state
// and waits for the shard goroutines, or gives up when ctx ends.
func (p *Pipeline) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.stop)
	for _, s := range p.shards {
		close(s.in)
	}
	p.mu.Unlock()
	if !p.started.Load() {
		return nil
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("pipeline: drain: %w", ctx.Err())
	}
	return p.saveState()
}

// saveState collects every shard's snapshot; shards must not be running.
func (p *Pipeline) saveState() error {
	if p.opts.SaveState == nil {
		return nil
	}
	states := make(map[string][]byte)
	for _, s := range p.shards {
		s.snapshot(states)
	}
	if len(states) == 0 {
		return nil
	}
	return p.opts.SaveState(states)
}

type shard struct {
	p        *Pipeline
	id       int
	in       chan Reading
	ctl      chan func()
	stage    Stage
	slotted  SlotStage // stage, when it keeps its state in the entries' slots
	sensors  map[string]*sensorEntry
	progress atomic.Int64 // unix nanos of the last loop iteration

	batch   []Reading
	results []Result
	alerts  []Alert
}

// sensorEntry is what a shard keeps of one sensor: its summary and the
// stage's state (see SlotStage).
type sensorEntry struct {
	info SensorInfo
	slot any
}

// maxBatch bounds how many queued readings one loop iteration takes.
const maxBatch = 512

func (s *shard) run() {
	tick := time.NewTicker(s.p.opts.TickInterval)
	defer tick.Stop()
	snap := time.NewTicker(s.p.opts.SnapshotInterval)
	defer snap.Stop()
	for {
		select {
		case r, ok := <-s.in:
			if !ok {
				return
			}
			s.batch = append(s.batch[:0], r)
		drain:
			for len(s.batch) < maxBatch {
				select {
				case r, ok := <-s.in:
					if !ok {
						break drain
					}
					s.batch = append(s.batch, r)
				default:
					break drain
				}
			}
			s.process()
		case fn := <-s.ctl:
			fn()
		case now := <-tick.C:
			if s.stage != nil {
				s.alerts = s.stage.Tick(now, s.alerts[:0])
				s.emit(nil)
			}
		case <-snap.C:
			s.periodicSnapshot()
		}
		s.progress.Store(s.p.opts.Now().UnixNano())
	}
}

func (s *shard) process() {
	s.results = s.results[:0]
	s.alerts = s.alerts[:0]
	for _, r := range s.batch {
		e, ok := s.sensors[r.Sensor]
		if !ok {
			e = &sensorEntry{info: SensorInfo{ID: r.Sensor}}
			s.sensors[r.Sensor] = e
		}
		// Fill the result in place: a local passed by pointer to the Stage
		// interface would escape, one heap allocation per reading.
		s.results = append(s.results, Result{})
		res := &s.results[len(s.results)-1]
		switch {
		case s.slotted != nil:
			s.alerts = s.slotted.ProcessSlot(r, &e.slot, res, s.alerts)
		case s.stage != nil:
			s.alerts = s.stage.Process(r, res, s.alerts)
		default:
			*res = Result{Reading: r, Raw: r.Value}
		}
		track(&e.info, res)
	}
	s.p.metrics.processedN(len(s.batch))
	s.emit(s.results)
	clear(s.batch)
	clear(s.results) // drop Commit and string references until the next batch
}

// track updates a sensor's summary with its latest result.
func track(info *SensorInfo, res *Result) {
	if !info.Time.IsZero() {
		if dt := res.Time.Sub(info.Time).Seconds(); dt > 0 {
			const alpha = 0.2
			info.Rate = (1-alpha)*info.Rate + alpha/dt
		}
	}
	info.Kind, info.Unit = res.Kind, res.Unit
	info.Value, info.Time, info.Flags = res.Value, res.Time, res.Flags
	info.Readings++
	info.Score, info.Detector, info.Band = res.Score, res.Detector, res.Band
}

func (s *shard) emit(results []Result) {
	for i := range s.alerts {
		a := &s.alerts[i]
		if a.Gateway == "" {
			a.Gateway = s.p.opts.Gateway
		}
		if e, ok := s.sensors[a.Sensor]; ok {
			e.info.Alerting = a.State == AlertFiring || a.State == AlertFlapping
		}
	}
	if len(results) == 0 && len(s.alerts) == 0 {
		return
	}
	if st := s.p.opts.Store; st != nil {
		st.Write(results, s.alerts)
	} else {
		for i := range results {
			results[i].Commit.Done(nil)
		}
	}
	for _, o := range s.p.opts.Observers {
		o.Observe(results, s.alerts)
	}
}

func (s *shard) snapshot(states map[string][]byte) {
	if snap, ok := s.stage.(Snapshotter); ok {
		// a copy: the state bytes are valid only during the call (the
		// engine encodes every sensor into one buffer)
		snap.Snapshot(func(sensor string, state []byte) { states[sensor] = bytes.Clone(state) })
	}
}

func (s *shard) periodicSnapshot() {
	if s.p.opts.SaveState == nil {
		return
	}
	states := make(map[string][]byte)
	s.snapshot(states)
	if len(states) == 0 {
		return
	}
	if err := s.p.opts.SaveState(states); err != nil {
		s.p.opts.Logger.Warn("state snapshot failed", "shard", s.id, "err", err)
	}
}

// do runs fn on the shard goroutine and waits for it.
func (s *shard) do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	wrapped := func() { fn(); close(done) }
	select {
	case s.ctl <- wrapped:
	case <-s.p.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
