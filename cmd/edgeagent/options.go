package main

import (
	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/ingest"
)

// ingestOptions copies the ingest config into the decoder's options, field by
// field, so YAML keys stay a contract and Go types stay free.
func ingestOptions(c config.IngestConfig) ingest.Options {
	o := ingest.Options{MaxPayload: int(c.MaxPayload), MaxSkew: c.MaxSkew, MaxIDLen: c.MaxIDLen}
	for _, t := range c.Topics {
		o.Topics = append(o.Topics, ingest.Topic{
			Pattern: t.Pattern, Format: t.Format, Value: t.Value, Time: t.Time,
			TimeFormat: ingest.TimeFormat(t.TimeFormat), Sensor: t.Sensor,
			Kind: t.Kind, Unit: t.Unit, UnitField: t.UnitField,
		})
	}
	return o
}
