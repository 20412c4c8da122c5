package compose

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkTree runs scripts/check-tree.sh on dir and returns its output and
// whether it passed.
func checkTree(t *testing.T, dir string) (string, bool) {
	t.Helper()
	script, err := filepath.Abs("../../scripts/check-tree.sh")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", script, dir).CombinedOutput()
	if _, failed := err.(*exec.ExitError); err != nil && !failed {
		t.Fatalf("check-tree.sh did not run: %v", err)
	}
	return string(out), err == nil
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func TestCheckTreeRefusesBuildOutputs(t *testing.T) {
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	files := map[string]struct {
		data []byte
		mode os.FileMode
	}{
		"cmd/tool/tool":          {append([]byte{0x7f, 'E', 'L', 'F'}, make([]byte, 64)...), 0o755},
		"bin/tool.exe":           {append([]byte("MZ"), make([]byte, 64)...), 0o644},
		"data/big.json":          {bytes.Repeat([]byte("x"), 1<<20+1), 0o644},
		"run.txt":                {[]byte("not a script\n"), 0o755},
		"scripts/ok.sh":          {[]byte("#!/bin/sh\necho ok\n"), 0o755},
		"pkg/testdata/big.bin":   {bytes.Repeat([]byte("y"), 2<<20), 0o644},
		"pkg/small/just_text.go": {[]byte("package small\n"), 0o644},
	}
	for name, f := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dir, "add", ".")
	out, ok := checkTree(t, dir)
	if ok {
		t.Fatalf("check-tree.sh passed a tree with build outputs:\n%s", out)
	}
	for _, want := range []string{"cmd/tool/tool is a compiled executable", "bin/tool.exe is a compiled executable",
		"data/big.json is 1048577 bytes", "run.txt has the executable bit"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, fine := range []string{"scripts/ok.sh", "pkg/testdata/big.bin", "just_text.go"} {
		if strings.Contains(out, fine) {
			t.Errorf("output names %s, which is allowed:\n%s", fine, out)
		}
	}

	git(t, dir, "rm", "-q", "--cached", "cmd/tool/tool", "bin/tool.exe", "data/big.json", "run.txt")
	if out, ok := checkTree(t, dir); !ok {
		t.Fatalf("check-tree.sh refused a clean tree:\n%s", out)
	}
}

func TestRepositoryHoldsNoBuildOutputs(t *testing.T) {
	if out, ok := checkTree(t, "../.."); !ok {
		t.Fatalf("the repository tracks build outputs:\n%s", out)
	}
}
