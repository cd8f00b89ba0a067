package aws

import (
	"encoding/json"
	"errors"

	"github.com/jmespath/go-jmespath"

	"github.com/sscsi/secrets-store/internal/objtemplate"
)

// Errors of value extraction; they never quote the value.
var (
	errNotJSON      = errors.New("the object's value is not a JSON document")
	errNotString    = errors.New("the expression's result is not a string")
	errSearchFailed = errors.New("the expression failed on the object's value")
)

// decodeJSON parses an object's value for jmesPath and objectTemplate.
func decodeJSON(value []byte) (any, error) {
	var doc any
	if err := json.Unmarshal(value, &doc); err != nil {
		return nil, errNotJSON
	}
	return doc, nil
}

// extractJMESPath evaluates c on doc and returns its string result.
func extractJMESPath(c *jmespath.JMESPath, doc any) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", errSearchFailed
		}
	}()
	res, err := c.Search(doc)
	if err != nil {
		return "", errSearchFailed
	}
	s, ok := res.(string)
	if !ok {
		return "", errNotString
	}
	return s, nil
}

// renderTemplate executes an objectTemplate over the decoded JSON value,
// within objtemplate's bounds (steps, function output, output size).
func renderTemplate(t *objtemplate.Template, doc any) ([]byte, error) {
	return t.Execute(doc)
}
