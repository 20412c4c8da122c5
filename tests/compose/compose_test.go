// Package compose checks docker-compose.yml without a Docker engine (none
// runs on the development machines): it loads the file with compose-go, the
// library docker compose itself uses, and checks that every build context and
// Dockerfile exists and that every environment variable set on a darklaunch
// service is one its configuration struct reads.
package compose

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/services/comparator"
	"github.com/darklaunch/darklaunch/services/mirror"
	"github.com/darklaunch/darklaunch/services/reporter"
	runner "github.com/darklaunch/darklaunch/services/shadow-runner"
)

// serviceSpecs are the four services' configuration structs by service
// name (the name in docker-compose.yml and the section in
// docs/configuration.md).
func serviceSpecs() map[string]any {
	return map[string]any{
		"mirror":        &mirror.Config{},
		"shadow-runner": &runner.Config{},
		"comparator":    &comparator.Config{},
		"reporter":      &reporter.Config{},
	}
}

func TestComposeFile(t *testing.T) {
	root, _ := filepath.Abs("../..")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithProfiles([]string{"demo"}))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	specs := serviceSpecs()
	demoKeys := []string{"DEMO_ADDR", "DEMO_VARIANT"}
	for name := range specs {
		if _, ok := project.Services[name]; !ok {
			t.Errorf("service %s is missing from docker-compose.yml", name)
		}
	}
	for _, want := range []string{"nats", "clickhouse", "redis", "demo-primary", "demo-shadow", "demo-secondary"} {
		if _, ok := project.Services[want]; !ok {
			t.Errorf("service %s is missing from docker-compose.yml", want)
		}
	}
	for name, svc := range project.Services {
		if svc.Build != nil {
			if st, err := os.Stat(svc.Build.Context); err != nil || !st.IsDir() {
				t.Errorf("%s: build context %s does not exist", name, svc.Build.Context)
			}
			df := svc.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(svc.Build.Context, df)
			}
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s: Dockerfile %s does not exist", name, df)
			}
		}
		if _, ok := specs[name]; ok {
			// The four services share deploy/service.Dockerfile; SERVICE
			// picks the module and its main package.
			arg := ""
			if svc.Build != nil && svc.Build.Args["SERVICE"] != nil {
				arg = *svc.Build.Args["SERVICE"]
			}
			if arg != name {
				t.Errorf("%s: build arg SERVICE is %q, want %q", name, arg, name)
			} else if _, err := os.Stat(filepath.Join(root, "services", arg, "cmd", arg, "main.go")); err != nil {
				t.Errorf("%s: build arg SERVICE=%s names no services/%s/cmd/%s: %v", name, arg, arg, arg, err)
			}
		}
		var known []string
		if spec, ok := specs[name]; ok {
			if known, err = config.Keys(spec); err != nil {
				t.Fatal(err)
			}
		} else if slices.Contains([]string{"demo-primary", "demo-shadow", "demo-secondary"}, name) {
			known = demoKeys
		} else {
			continue // third-party images: their own variables
		}
		for key := range svc.Environment {
			if !slices.Contains(known, key) {
				t.Errorf("%s: docker-compose.yml sets %s, which the service does not read (it reads %v)", name, key, known)
			}
		}
	}
}
