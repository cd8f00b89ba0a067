// Command demoaws seeds and changes the AWS Secrets Manager secrets and SSM
// parameters of `make demo` in an AWS emulator (moto_server), with the AWS
// SDK, so the demo needs no aws CLI.
//
//	demoaws -endpoint http://127.0.0.1:5055 seed     # create, or reset to the first values
//	demoaws -endpoint http://127.0.0.1:5055 rotate   # new database password
//
// The values are demo values and are printed on purpose.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

type config struct {
	endpoint string
	region   string
	command  string
}

type clients struct {
	sm  *secretsmanager.Client
	ssm *ssm.Client
}

// The demo's objects. The SecretProviderClass in hack/demo.sh names them.
var (
	secrets = []struct{ name, value string }{
		{"demo/db", `{"username":"app","password":"first-password"}`},
		{"demo/api-key", "ak-demo-0001"},
	}
	parameters = []struct {
		name, value string
		typ         ssmtypes.ParameterType
	}{
		{"/demo/feature-flags", "checkout=on,search=off", ssmtypes.ParameterTypeString},
		{"/demo/db-host", "db.demo.internal:5432", ssmtypes.ParameterTypeSecureString},
	}
)

func main() {
	var cfg config
	flag.StringVar(&cfg.endpoint, "endpoint", "http://127.0.0.1:5055", "AWS endpoint (moto_server)")
	flag.StringVar(&cfg.region, "region", "us-east-1", "region")
	flag.Parse()
	cfg.command = flag.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "demoaws:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	awsCfg := aws.Config{
		Region:       cfg.region,
		BaseEndpoint: aws.String(cfg.endpoint),
		// moto accepts any credentials.
		Credentials: credentials.NewStaticCredentialsProvider("demo", "demo", ""),
	}
	c := clients{sm: secretsmanager.NewFromConfig(awsCfg), ssm: ssm.NewFromConfig(awsCfg)}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch cfg.command {
	case "seed":
		return seed(ctx, c)
	case "rotate":
		pw := fmt.Sprintf("rotated-%s", time.Now().UTC().Format("150405"))
		if err := putSecret(ctx, c, "demo/db", fmt.Sprintf(`{"username":"app","password":%q}`, pw)); err != nil {
			return err
		}
		fmt.Printf("demo/db password is now %s\n", pw)
		return nil
	default:
		return fmt.Errorf("command %q: want seed or rotate", cfg.command)
	}
}

func seed(ctx context.Context, c clients) error {
	for _, s := range secrets {
		if err := putSecret(ctx, c, s.name, s.value); err != nil {
			return err
		}
		fmt.Printf("  secretsmanager %-22s %s\n", s.name, s.value)
	}
	for _, p := range parameters {
		_, err := c.ssm.PutParameter(ctx, &ssm.PutParameterInput{
			Name: aws.String(p.name), Value: aws.String(p.value), Type: p.typ, Overwrite: aws.Bool(true),
		})
		if err != nil {
			return fmt.Errorf("put parameter %s: %w", p.name, err)
		}
		fmt.Printf("  ssm %-33s %s\n", p.name, p.value)
	}
	return nil
}

// putSecret creates the secret, or gives it a new current version.
func putSecret(ctx context.Context, c clients, name, value string) error {
	_, err := c.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
	var exists *smtypes.ResourceExistsException
	if errors.As(err, &exists) {
		_, err = c.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
	}
	if err != nil {
		return fmt.Errorf("secret %s: %w", name, err)
	}
	return nil
}
