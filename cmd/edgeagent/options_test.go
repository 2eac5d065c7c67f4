package main

import (
	"reflect"
	"testing"

	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/ingest"
)

// TestIngestOptions_configDefaults checks that the default config builds a Decoder and
// that its topics are ingest's DefaultTopics.
func TestIngestOptions_configDefaults(t *testing.T) {
	opts := ingestOptions(config.Default().Ingest)
	if _, err := ingest.New(opts); err != nil {
		t.Fatalf("New(default config) = %v", err)
	}
	if !reflect.DeepEqual(opts.Topics, ingest.DefaultTopics()) {
		t.Errorf("config default topics %+v; ingest.DefaultTopics() %+v", opts.Topics, ingest.DefaultTopics())
	}
	// Every format and time format the config accepts, ingest accepts.
	for _, f := range config.IngestFormats {
		for _, tf := range append(config.IngestTimeFormats, "") {
			topic := ingest.Topic{Pattern: "a/{sensor}", Format: f, TimeFormat: ingest.TimeFormat(tf)}
			if f != "number" {
				topic.Value, topic.Time = "v", "ts"
			}
			if _, err := ingest.New(ingest.Options{Topics: []ingest.Topic{topic}}); err != nil {
				t.Errorf("New(format %q, time_format %q) = %v", f, tf, err)
			}
		}
	}
}
