// Command kstatus computes the kstatus of objects as Flux and cli-utils do
// (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute).
// Usage: kstatus < objects.json (a JSON array of objects); prints a JSON array of
// {"status": ..., "message": ...}, one per object, in order.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	// Decoded as the API machinery does: whole numbers as int64, as kstatus expects them.
	input, err := io.ReadAll(os.Stdin)
	var objects []interface{}
	if err == nil {
		err = utiljson.Unmarshal(input, &objects)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "objects:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(objects))
	for i, item := range objects {
		object, ok := item.(map[string]interface{})
		if !ok {
			fmt.Fprintf(os.Stderr, "object %d is not a JSON object\n", i)
			os.Exit(2)
		}
		computed, err := status.Compute(&unstructured.Unstructured{Object: object})
		if err != nil {
			fmt.Fprintf(os.Stderr, "object %d: %v\n", i, err)
			os.Exit(1)
		}
		results = append(results, result{Status: computed.Status.String(), Message: computed.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
