package aws_test

import (
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/sscsi/secrets-store/providers/aws/auth"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/plugintest"
)

func TestConformance(t *testing.T) {
	e := newEnv(t, envOptions{cacheTTL: time.Second})
	const value = "conformance-s3cr3t-9f1c"
	s, p := e.name("db"), e.name("param")
	e.putSecret(region, s, sdkaws.String(`{"password":"`+value+`"}`), nil)
	e.putParam(region, p, "param-"+value, ssmtypes.ParameterTypeSecureString)
	req := request("app-0", "app", objects(
		"- {objectName: "+s+", objectType: secretsmanager, jmesPath: [{path: password, objectAlias: password}]}",
		"- {objectName: "+p+", objectType: ssmparameter}",
	))
	notFound := request("app-0", "app", objects("- {objectName: "+e.name("absent")+", objectType: secretsmanager}"))
	plugintest.Run(t, plugintest.Provider{
		Name:               "aws",
		Backend:            e.backend,
		Attributes:         req.Attributes,
		Tokens:             map[string]plugin.Token{auth.AudienceIRSA: req.Tokens[auth.AudienceIRSA]},
		SecretValue:        value,
		NotFoundAttributes: notFound.Attributes,
	})
}
