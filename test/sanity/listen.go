package sanity

import (
	"net"
	"os"
)

func netListenUnix(p string) (net.Listener, error) {
	_ = os.Remove(p)
	return net.Listen("unix", p)
}
