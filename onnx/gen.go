// Package onnx writes ONNX models: the protobuf messages of ONNX's own
// schema (onnx.pb.go, generated from onnx.proto) and Graph, a small builder
// of one graph's nodes, weights, inputs and outputs. It knows nothing of
// Kiln's layers; package layers turns a model into nodes with it.
//
// onnx.proto is ONNX 1.12's schema as Debian's python3-onnx ships it (IR
// version 8, the newest its checker accepts). To regenerate onnx.pb.go:
//
//	apt-get install protobuf-compiler python3-onnx
//	cp "$(dpkg -L python3-onnx | grep 'onnx.proto$')" onnx/onnx.proto
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@VERSION  # VERSION: google.golang.org/protobuf in go.mod
//	go generate ./onnx
package onnx

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go_opt=Monnx.proto=github.com/kiln-ml/kiln/onnx onnx.proto
