// Command provider-vault serves HashiCorp Vault secrets over the Secrets
// Store CSI provider API, logging in with each pod's own service account.
// Its flags keep vault-csi-provider's names; settings come from, in
// ascending precedence, the environment, flags and the
// SecretProviderClass.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/providers/vault"
	"github.com/sscsi/secrets-store/providers/vault/params"
)

var version = "dev"

func main() {
	var cfg vault.Config
	klog.InitFlags(nil)
	d := &cfg.Defaults
	flag.StringVar(&cfg.Socket, "endpoint", "/var/run/secrets-store-csi-providers/vault.sock", "unix socket to serve the provider API on")
	flag.StringVar(&cfg.HealthAddr, "health-addr", ":8991", "HTTP address for /healthz and /metrics (empty: off; vault-csi-provider uses :8080)")
	flag.BoolVar(&cfg.WriteToTarget, "write-to-target", false, "legacy mode: write files into the target path instead of returning them to the driver")
	flag.StringVar(&d.Connection.Address, "vault-addr", env("VAULT_ADDR", params.DefaultAddress), "default Vault address (default $VAULT_ADDR)")
	flag.StringVar(&d.AuthMount, "vault-mount", params.DefaultAuthMount, "default mount path of the kubernetes (or jwt) auth method")
	flag.StringVar(&d.Connection.Namespace, "vault-namespace", os.Getenv("VAULT_NAMESPACE"), "default Vault Enterprise namespace (default $VAULT_NAMESPACE)")
	var caCert, caDir, clientCert, clientKey string
	flag.StringVar(&caCert, "vault-tls-ca-cert", os.Getenv("VAULT_CACERT"), "PEM CA certificate file to trust for Vault (default $VAULT_CACERT); wins over -vault-tls-ca-directory")
	flag.StringVar(&caDir, "vault-tls-ca-directory", os.Getenv("VAULT_CAPATH"), "directory of PEM CA certificates to trust for Vault (default $VAULT_CAPATH)")
	flag.StringVar(&d.Connection.TLS.ServerName, "vault-tls-server-name", os.Getenv("VAULT_TLS_SERVER_NAME"), "TLS server name for Vault (default $VAULT_TLS_SERVER_NAME)")
	flag.StringVar(&clientCert, "vault-tls-client-cert", os.Getenv("VAULT_CLIENT_CERT"), "PEM client certificate for mTLS to Vault (default $VAULT_CLIENT_CERT)")
	flag.StringVar(&clientKey, "vault-tls-client-key", os.Getenv("VAULT_CLIENT_KEY"), "PEM client key for mTLS to Vault (default $VAULT_CLIENT_KEY)")
	skip, _ := strconv.ParseBool(os.Getenv("VAULT_SKIP_VERIFY"))
	flag.BoolVar(&d.Connection.TLS.SkipVerify, "vault-tls-skip-verify", skip, "do not verify Vault's certificate (default $VAULT_SKIP_VERIFY; never in production)")
	flag.StringVar(&d.TLSFileDir, "spc-tls-dir", params.DefaultTLSFileDir, "the only directory under which a SecretProviderClass may name TLS files (vaultCACertPath, vaultCADirectory, vaultTLSClientCertPath, vaultTLSClientKeyPath); empty: none (the -vault-tls-* flags are not restricted)")
	allowed := flag.String("allowed-vault-addrs", "*", "Vault addresses a SecretProviderClass's vaultAddress may name besides -vault-addr, comma-separated (the provider sends the pod's token there); \"\": only -vault-addr; \"*\": any (vault-csi-provider's behaviour)")
	flag.StringVar(&d.Audience, "audience", params.DefaultAudience, "default audience of the service account token to log in with (the CSIDriver's tokenRequests must list it)")
	flag.DurationVar(&cfg.CacheTTL, "cache-ttl", vault.DefaultCacheTTL, "how long a plain read is shared between mounts of the same identity (0: off); keep it below the rotation poll interval")
	flag.IntVar(&cfg.TokenCacheSize, "cache-size", 1000, "Vault tokens kept, one per identity (0: log in on every mount)")
	flag.Float64Var(&cfg.RenewFraction, "lease-renew-fraction", vault.DefaultRenewFraction, "a pod's lease is renewed on a republish once this fraction of its TTL has passed")
	flag.Float64Var(&cfg.ReissueFraction, "lease-reissue-fraction", vault.DefaultReissueFraction, "a pod's dynamic secret is issued anew once it has lived this fraction of its max TTL")
	flag.StringVar(&cfg.VersionKeyFile, "version-key-file", "", "file with the key (>= 16 bytes) of the hashes used as object versions (default: a random key per process)")
	debug := flag.Bool("debug", false, "vault-csi-provider compatible: log at -v=4")
	flag.Parse()
	d.Connection.TLS.CACert = params.File{Name: caCert}
	d.Connection.TLS.CADirectory = params.File{Name: caDir}
	d.Connection.TLS.ClientCert = params.File{Name: clientCert}
	d.Connection.TLS.ClientKey = params.File{Name: clientKey}
	var err error
	if d.AnyAddress, d.AllowedAddresses, err = params.ParseAllowedAddresses(*allowed); err != nil {
		fmt.Fprintln(os.Stderr, "provider-vault:", err)
		os.Exit(2)
	}
	if *debug {
		_ = flag.Set("v", "4")
	}
	cfg.Version = version
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := vault.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "provider-vault:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
