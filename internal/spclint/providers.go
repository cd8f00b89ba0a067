package spclint

import (
	"errors"
	"strings"

	"github.com/sscsi/secrets-store/internal/spcparams"
	awsparams "github.com/sscsi/secrets-store/providers/aws/params"
	fakeparams "github.com/sscsi/secrets-store/providers/fake/params"
	vaultparams "github.com/sscsi/secrets-store/providers/vault/params"
)

// Problem is one mistake (or note) in a provider's spec.parameters.
type Problem struct {
	// Param is the spec.parameters key at fault ("" for the parameters
	// as a whole).
	Param string
	// Message says what is wrong and how to fix it.
	Message string
	// Warning marks problems that do not fail a mount.
	Warning bool
}

// checker judges one provider's spec.parameters offline, the way the
// provider will at mount time, and lists the files a mount will hold.
type checker func(parameters map[string]string) (files []string, problems []Problem)

// checkers is the registry of providers whose parameters this tool
// checks, by spec.provider. A provider adds one entry, backed by its
// parameter package, which must not link the provider's backend SDK
// (go list -deps ./cmd/sscsi stays small). Read-only.
var checkers = map[string]checker{
	"aws":   checkAWS,
	"fake":  checkFake,
	"vault": checkVault,
}

// paramProblem turns a parameter package's error into a Problem naming
// the parameter at fault (every params package reports spcparams.Error).
func paramProblem(err error) Problem {
	var pe *spcparams.Error
	if errors.As(err, &pe) {
		return Problem{Param: pe.Param, Message: pe.Error()}
	}
	return Problem{Message: err.Error()}
}

func checkAWS(parameters map[string]string) ([]string, []Problem) {
	var problems []Problem
	if strings.TrimSpace(parameters[awsparams.ParamRegion]) == "" {
		problems = append(problems, Problem{Param: awsparams.ParamRegion, Warning: true,
			Message: "is empty: the provider will use its --region, else the node's region label (topology.kubernetes.io/region)"})
	}
	// The default region stands in for the provider's, unknown offline.
	p, err := awsparams.ParseParams(parameters, "us-east-1")
	if err != nil {
		return nil, append(problems, paramProblem(err))
	}
	var files []string
	for _, o := range p.Objects {
		files = append(files, o.FileName)
		for _, j := range o.JMESPaths {
			files = append(files, j.FileName)
		}
	}
	return files, problems
}

func checkFake(parameters map[string]string) ([]string, []Problem) {
	objs, err := fakeparams.ParseObjects(parameters[fakeparams.ParamObjects])
	if err != nil {
		return nil, []Problem{paramProblem(err)}
	}
	files := make([]string, 0, len(objs))
	for _, o := range objs {
		files = append(files, o.File())
	}
	return files, nil
}

func checkVault(parameters map[string]string) ([]string, []Problem) {
	var problems []Problem
	if strings.TrimSpace(parameters[vaultparams.ParamVaultAddress]) == "" {
		problems = append(problems, Problem{Param: vaultparams.ParamVaultAddress, Warning: true,
			Message: "is empty: the provider will use its -vault-addr"})
	}
	// The provider's -spc-tls-dir is unknown offline: any absolute TLS
	// path passes the check, then paths outside the default directory are
	// noted as warnings. Its -allowed-vault-addrs is unknown too: any
	// vaultAddress passes.
	p, err := vaultparams.Parse(parameters, vaultparams.Defaults{TLSFileDir: "/", AnyAddress: true})
	if err != nil {
		return nil, append(problems, paramProblem(err))
	}
	if _, err := vaultparams.Parse(parameters, vaultparams.Defaults{TLSFileDir: vaultparams.DefaultTLSFileDir, AnyAddress: true}); err != nil {
		pr := paramProblem(err)
		pr.Warning = true
		pr.Message += " (with the default -spc-tls-dir; the provider's may differ)"
		problems = append(problems, pr)
	}
	var files []string
	for _, o := range p.Objects {
		if o.AllKeys {
			files = append(files, o.Name+"/*")
			continue
		}
		files = append(files, o.Name)
	}
	return files, problems
}
