package aws

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/singleflight"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sscsi/secrets-store/providers/plugin"
)

// RegionLabel is the node label a SecretProviderClass without a region
// falls back to.
const RegionLabel = "topology.kubernetes.io/region"

// nodeRegion reads this node's region label once; a node does not move.
type nodeRegion struct {
	kube    kubernetes.Interface
	node    string
	flights singleflight.Group

	mu     sync.Mutex // guards region
	region string
}

func (n *nodeRegion) get(ctx context.Context) (string, error) {
	n.mu.Lock()
	r := n.region
	n.mu.Unlock()
	if r != "" {
		return r, nil
	}
	v, err, _ := n.flights.Do("", func() (any, error) {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.node, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("%w: parameter region is empty and node %s could not be read for its %s label: %v", plugin.ErrUnavailable, n.node, RegionLabel, err)
		}
		r := node.Labels[RegionLabel]
		if r == "" {
			return "", fmt.Errorf("%w: parameter region is empty and node %s has no %s label; set spec.parameters.region", plugin.ErrInvalidParameters, n.node, RegionLabel)
		}
		n.mu.Lock()
		n.region = r
		n.mu.Unlock()
		return r, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}
