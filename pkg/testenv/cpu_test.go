package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestProcessCPU(t *testing.T) {
	self, err := ProcessCPU(os.Getpid(), false)
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU in a child shell until it has used at least 100 ms; the
	// parent's figure with children counts it, without children does not.
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		d, err := ProcessCPU(cmd.Process.Pid, false)
		if err == nil && d < 100*time.Millisecond {
			return fmt.Errorf("child used %s", d)
		}
		return err
	})
	// Read in this order, both figures only grow: with ≥ without + the
	// child's 100 ms.
	without, _ := ProcessCPU(os.Getpid(), false)
	with, err := ProcessCPU(os.Getpid(), true)
	if err != nil {
		t.Fatal(err)
	}
	if with-without < 100*time.Millisecond || without < self {
		t.Fatalf("with children %s, without %s (before %s)", with, without, self)
	}
	if _, err := ProcessCPU(1<<30, false); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
