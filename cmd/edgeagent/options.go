package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent/api"
	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/ingest"
)

// ingestOptions copies the ingest config into the decoder's options, field by
// field, so YAML keys stay a contract and Go types stay free. The config is
// validated, so the time zone loads.
func ingestOptions(c config.IngestConfig) ingest.Options {
	o := ingest.Options{MaxPayload: int(c.MaxPayload), MaxSkew: c.MaxSkew, MaxIDLen: c.MaxIDLen}
	if c.Timezone != "" && c.Timezone != "local" {
		o.Location, _ = time.LoadLocation(c.Timezone)
	}
	if h := c.HomeAssistant; h.Enabled {
		o.HomeAssistant = &ingest.HomeAssistant{Prefix: h.Prefix, MaxEntities: h.MaxEntities}
	}
	if s := c.Sparkplug; s.Enabled {
		o.Sparkplug = &ingest.Sparkplug{Groups: s.Groups, UnitProperty: s.UnitProperty}
	}
	for _, t := range c.Topics {
		it := ingest.Topic{
			Pattern: t.Pattern, Format: t.Format, Value: t.Value, Time: t.Time,
			TimeFormat: ingest.TimeFormat(t.TimeFormat), Sensor: t.Sensor,
			Kind: t.Kind, Unit: t.Unit, UnitField: t.UnitField,
			Preset: t.Preset, Prefix: t.Prefix, ID: t.ID, Units: t.Units, UnitFields: t.UnitFields,
			Kinds: t.Kinds, LowerKind: t.LowerKind, Online: t.Online, Offline: t.Offline, IDTags: t.IDTags,
		}
		for _, v := range t.Values {
			it.Values = append(it.Values, ingest.Value{Path: v.Path, Kind: v.Kind, Unit: v.Unit})
		}
		if f := t.Flatten; f != nil {
			it.Flatten = &ingest.Flatten{Depth: f.Depth, Root: f.Root, Include: f.Include, Exclude: f.Exclude}
		}
		o.Topics = append(o.Topics, it)
	}
	return o
}

// ingestStatus copies what the decoder could not map into the status API.
func ingestStatus(dec *ingest.Decoder) api.IngestStatus {
	st := dec.Stats()
	out := api.IngestStatus{
		UnsupportedTemplates: []api.UnsupportedTemplate{},
		DiscoveredSensors:    st.DiscoveredSensors,
		SparkplugSeqGaps:     st.SparkplugSeqGaps,
	}
	for _, u := range dec.UnsupportedTemplates() {
		out.UnsupportedTemplates = append(out.UnsupportedTemplates, api.UnsupportedTemplate{
			ConfigTopic: u.ConfigTopic, Sensor: u.Sensor, Template: u.Template, Why: u.Why})
	}
	return out
}

// registerIngestMetrics exposes the decoders' device counters.
func registerIngestMetrics(reg prometheus.Registerer, dec *ingest.Decoder) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgeagent_sparkplug_seq_gaps_total", Help: "Sparkplug B sequence gaps seen (messages lost between edge node and broker).",
		}, func() float64 { return float64(dec.Stats().SparkplugSeqGaps) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgeagent_sparkplug_births_total", Help: "Sparkplug B NBIRTH/DBIRTH messages decoded.",
		}, func() float64 { return float64(dec.Stats().SparkplugBirths) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgeagent_sparkplug_deaths_total", Help: "Sparkplug B NDEATH/DDEATH messages decoded.",
		}, func() float64 { return float64(dec.Stats().SparkplugDeaths) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgeagent_ha_discovered_sensors", Help: "Sensors created from Home Assistant discovery configs.",
		}, func() float64 { return float64(dec.Stats().DiscoveredSensors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgeagent_ha_unsupported_templates", Help: "Home Assistant value templates that cannot be evaluated (listed in /api/v1/status).",
		}, func() float64 { return float64(dec.Stats().UnsupportedTemplates) }),
	)
}
