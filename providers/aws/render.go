package aws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"text/template"

	"github.com/jmespath/go-jmespath"
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

// maxTemplateOutput bounds what an objectTemplate may produce, so that a
// template with nested ranges cannot exhaust the provider's memory.
const maxTemplateOutput = 4 << 20

// errTooLarge stops a template whose output passed maxTemplateOutput.
var errTooLarge = errors.New("output too large")

type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.Len()+len(p) > l.limit {
		return 0, errTooLarge
	}
	return l.Buffer.Write(p)
}

// renderTemplate executes an objectTemplate over the decoded JSON value.
func renderTemplate(t *template.Template, doc any) ([]byte, error) {
	buf := &limitedBuffer{limit: maxTemplateOutput}
	if err := t.Execute(buf, doc); err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("objectTemplate output is larger than %d bytes", maxTemplateOutput)
		}
		// Template errors can quote data; keep only that it failed.
		return nil, errors.New("objectTemplate failed on the object's value (check the keys it uses)")
	}
	return buf.Bytes(), nil
}
