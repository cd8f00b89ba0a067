package fake_test

import (
	"testing"
	"time"

	"github.com/sscsi/secrets-store/providers/fake"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/plugintest"
)

func TestConformance(t *testing.T) {
	plugintest.Run(t, plugintest.Provider{
		Name:    "fake",
		Backend: fake.New(),
		Attributes: map[string]string{
			"objects":                 "- {objectName: password, value: s3cr3t-fake-value}\n- {objectName: audiences, source: serviceAccountTokenAudiences}",
			plugin.AttrPodName:        "app-0",
			plugin.AttrPodNamespace:   "default",
			plugin.AttrPodUID:         "uid-0",
			plugin.AttrServiceAccount: "app",
		},
		Tokens:      map[string]plugin.Token{"vault": {Token: "tok-fake-eyJhbGciOi.secret-token", ExpirationTimestamp: time.Now().Add(time.Hour)}},
		SecretValue: "s3cr3t-fake-value",
		NotFoundAttributes: map[string]string{
			"objects":               "- {objectName: from-node-secret, source: nodePublishSecret, key: absent}",
			plugin.AttrPodName:      "app-0",
			plugin.AttrPodNamespace: "default",
		},
	})
}
