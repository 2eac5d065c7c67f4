package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun_configCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name, yaml, wantErr string
	}{
		{"shipped configs", "", ""},
		{"bad template", "ingest:\n  topics:\n    - {pattern: \"a/{sensr}\", format: json, value: v}\n", "ingest.topics[0].pattern"},
		{"bad detector", "rules:\n  - {name: r, detectors: [{type: zscore, alpha: 7}]}\n", "rules[0].detectors[0]"},
		{"unknown key", "mqtt:\n  listn: x\n", "line 2: field listn not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.yaml == "" {
				shipped, _ := filepath.Glob("../../configs/*.yaml")
				for _, path := range shipped {
					var out, errb bytes.Buffer
					err := run(context.Background(), []string{"config", "check", path}, &out, &errb)
					if err != nil || !strings.Contains(out.String(), "is valid") {
						t.Errorf("config check %s = %v\n%s", path, err, out.String())
					}
				}
				return
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"config", "check", write("c.yaml", tt.yaml)}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("config check = %v; want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestRun_versionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "edgeagent ") {
		t.Errorf("version = %q, %v", out.String(), err)
	}
	if err := run(context.Background(), []string{"nope"}, &out, &errb); err == nil {
		t.Error("unknown command accepted")
	}
	errb.Reset()
	_ = run(context.Background(), []string{"serve", "--help"}, &out, &errb)
	if !strings.Contains(errb.String(), "-config") {
		t.Errorf("serve --help does not list --config:\n%s", errb.String())
	}
}
