module github.com/ringlog/ringlog

go 1.26

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/ncw/directio v1.0.5 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)
