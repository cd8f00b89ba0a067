// Command genpki writes the local node's certificates and service account key (pki.Node) into
// -dir, keeping whatever is there already. test/cluster/up.sh runs it.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/sscsi/secrets-store/test/cluster/pki"
)

func main() {
	dir := flag.String("dir", "", "directory of the node's PKI (required)")
	serviceIP := flag.String("service-ip", "", "first address of the service CIDR (the kubernetes Service; required)")
	flag.Parse()
	ip := net.ParseIP(*serviceIP)
	if *dir == "" || ip == nil {
		fmt.Fprintln(os.Stderr, "genpki: -dir and a valid -service-ip are required")
		os.Exit(2)
	}
	if _, err := pki.Write(*dir, pki.Node(ip)); err != nil {
		fmt.Fprintln(os.Stderr, "genpki:", err)
		os.Exit(1)
	}
}
