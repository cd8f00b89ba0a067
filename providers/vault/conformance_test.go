package vault_test

import (
	"testing"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/plugintest"
	"github.com/sscsi/secrets-store/providers/vault"
)

func TestConformance(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{CacheTTL: vault.DefaultCacheTTL})
	const value = "conformance-s3cr3t-4b7e"
	e.vault.role("app", "default", "app", "secret/", "database/")
	e.vault.putKV2("conf", map[string]any{"password": value})
	req := request("default", "app-0", "app", spc("app",
		"- {objectName: password, secretPath: secret/data/conf, secretKey: password}",
		"- {objectName: db-user, secretPath: database/creds/app, secretKey: username}",
	))
	notFound := request("default", "app-0", "app", spc("app", "- {objectName: x, secretPath: secret/data/absent, secretKey: v}"))
	plugintest.Run(t, plugintest.Provider{
		Name:               "vault",
		Backend:            e.b,
		Attributes:         req.Attributes,
		Tokens:             map[string]plugin.Token{"vault": req.Tokens["vault"]},
		SecretValue:        value,
		NotFoundAttributes: notFound.Attributes,
	})
}
