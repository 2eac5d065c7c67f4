package agent_test

import (
	"os/exec"
	"regexp"
	"testing"
)

// TestDeps keeps the import arrows of ARCHITECTURE.md honest: the domain
// package, storage and broker never import the agent/* subpackages, and
// storage and broker never import each other.
func TestDeps(t *testing.T) {
	const module = "github.com/edgeagent/edgeagent"
	for pkg, bad := range map[string]string{
		"agent":   "agent/|broker|storage|cmd",
		"broker":  "agent/|storage|cmd",
		"storage": "agent/|broker|cmd",
	} {
		out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).CombinedOutput()
		if err != nil {
			t.Errorf("go list %s: %v\n%s", pkg, err, out)
			continue
		}
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(module) + `/(` + bad + `)\S*`)
		if dep := re.FindString(string(out)); dep != "" {
			t.Errorf("%s imports %q", pkg, dep)
		}
	}
}
