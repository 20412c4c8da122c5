module github.com/darklaunch/darklaunch/deploy/demo

go 1.26
