// Package spcparams holds what every provider's SecretProviderClass
// parameter package (providers/<p>/params) shares: the error that names the
// spec.parameters key at fault. It is a leaf, as those packages are, so
// `sscsi lint` judges every provider's parameters the same way without
// linking a backend SDK.
package spcparams

import "fmt"

// Error is a spec.parameters mistake the SecretProviderClass author must
// fix. Each provider's params package calls it params.Error.
type Error struct {
	// Param is the spec.parameters key at fault, e.g. objects or region.
	Param string
	// msg names the parameter (and object) and says how to fix it.
	msg string
}

func (e *Error) Error() string { return e.msg }

// Errorf returns an *Error for param whose message is format and args.
func Errorf(param, format string, args ...any) error {
	return &Error{Param: param, msg: fmt.Sprintf(format, args...)}
}
