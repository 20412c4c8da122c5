package compose

import (
	"os"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/config"
)

// docs/configuration.md is generated from the binaries' -h output; this
// fails when a setting was added without regenerating it.
func TestConfigurationDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, spec := range serviceSpecs() {
		_, section, ok := strings.Cut(string(doc), "## "+name+"\n")
		if !ok {
			t.Errorf("docs/configuration.md has no section for %s", name)
			continue
		}
		section, _, _ = strings.Cut(section, "\n## ")
		keys, err := config.Keys(spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !strings.Contains(section, "| `"+k+"` |") {
				t.Errorf("%s setting %s is not in docs/configuration.md: run make build && scripts/config-docs.sh", name, k)
			}
		}
	}
}
