// Command nullextender is the cheapest kube-scheduler extender there can be: it answers filter
// (every node passes) and prioritize (a fixed score per node) without any policy or data. A
// throughput run against it measures what the extender protocol itself costs kube-scheduler
// (JSON both ways over HTTP in every scheduling cycle), the floor under any real extender; see
// bench/scheduler_throughput.py --floor. Standard library only, so it builds in about a second.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
)

// extenderArgs is the part of k8s.io/kube-scheduler/extender/v1.ExtenderArgs this needs
// (nodeCacheCapable: true sends node names only).
type extenderArgs struct {
	NodeNames *[]string `json:"nodenames,omitempty"`
}

type filterResult struct {
	NodeNames   *[]string         `json:"nodenames,omitempty"`
	FailedNodes map[string]string `json:"failedNodes,omitempty"`
	Error       string            `json:"error,omitempty"`
}

type hostPriority struct {
	Host  string `json:"host"`
	Score int64  `json:"score"`
}

func decode(w http.ResponseWriter, r *http.Request) (extenderArgs, bool) {
	var args extenderArgs
	if err := json.NewDecoder(r.Body).Decode(&args); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return args, false
	}
	if args.NodeNames == nil {
		http.Error(w, "nodenames missing: configure nodeCacheCapable: true", http.StatusBadRequest)
		return args, false
	}
	return args, true
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("writing the answer: %v", err)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8888", "address to serve on")
	flag.Parse()
	http.HandleFunc("/filter", func(w http.ResponseWriter, r *http.Request) {
		if args, ok := decode(w, r); ok {
			reply(w, filterResult{NodeNames: args.NodeNames})
		}
	})
	http.HandleFunc("/prioritize", func(w http.ResponseWriter, r *http.Request) {
		if args, ok := decode(w, r); ok {
			// Scores spread over 0..10 like a real answer, so the scheduler's merge does the same work.
			out := make([]hostPriority, len(*args.NodeNames))
			for i, name := range *args.NodeNames {
				out[i] = hostPriority{Host: name, Score: int64(i % 11)}
			}
			reply(w, out)
		}
	})
	log.Printf("null extender serving on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
