module github.com/carbon-aware-scheduler/hack/node/pause

go 1.25.0
