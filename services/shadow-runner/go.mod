module github.com/darklaunch/darklaunch/services/shadow-runner

go 1.26

require github.com/darklaunch/darklaunch/pkg v0.0.0

replace github.com/darklaunch/darklaunch/pkg => ../../pkg
