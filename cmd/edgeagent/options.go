package main

import (
	"time"

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
