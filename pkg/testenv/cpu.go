package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// 100 on Linux).
const clockTick = 10 * time.Millisecond

// ProcessCPU is the CPU time (user and system, to 10 ms) the process pid
// has used so far, from /proc/<pid>/stat; with children, that of the
// processes it started too (nginx's workers), as long as they run. The
// benchmarks that charge CPU per request or per pair to each process of
// the pipeline read it.
func ProcessCPU(pid int, children bool) (time.Duration, error) {
	total, err := statCPU(pid)
	if err != nil || !children {
		return total, err
	}
	// A child is listed under the thread that started it, which in a Go
	// process is any of its threads.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		kids, _ := os.ReadFile(task)
		for c := range strings.FieldsSeq(string(kids)) {
			if n, err := strconv.Atoi(c); err == nil {
				if d, err := ProcessCPU(n, true); err == nil { // an error: gone meanwhile
					total += d
				}
			}
		}
	}
	return total, nil
}

func statCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (in parentheses, which may hold
	// spaces): state is the 3rd field, utime and stime the 14th and 15th.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name in %q", pid, data)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * clockTick, nil
}
