package ingest

import "sync/atomic"

// Stats are the decoder's counters beyond rejections, for the status API and
// metrics (the integrator exports them, e.g. with prometheus.CounterFunc).
type Stats struct {
	SparkplugSeqGaps     int64 // messages whose seq did not follow the last one of their edge node
	SparkplugBirths      int64 // NBIRTH and DBIRTH messages
	SparkplugDeaths      int64 // NDEATH and DDEATH messages
	DiscoveredSensors    int   // Home Assistant entities with a mapping
	UnsupportedTemplates int   // Home Assistant entities whose value_template is not evaluated
}

type stats struct {
	seqGaps, births, deaths atomic.Int64
}

// Stats returns the decoder's counters.
func (d *Decoder) Stats() Stats {
	s := Stats{SparkplugSeqGaps: d.stats.seqGaps.Load(), SparkplugBirths: d.stats.births.Load(),
		SparkplugDeaths: d.stats.deaths.Load()}
	if d.ha != nil {
		d.ha.mu.RLock()
		s.DiscoveredSensors, s.UnsupportedTemplates = len(d.ha.entities), len(d.ha.unsupported)
		d.ha.mu.RUnlock()
	}
	return s
}
