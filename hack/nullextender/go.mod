module github.com/carbon-aware-scheduler/hack/nullextender

go 1.22
