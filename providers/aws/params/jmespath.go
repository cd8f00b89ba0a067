package params

import (
	"errors"
	"fmt"

	"github.com/jmespath/go-jmespath"
)

// maxJMESPathLength bounds an expression; real ones are a few words.
const maxJMESPathLength = 1024

// CompileJMESPath compiles expr, turning a panic of the parser (it has had
// some on hostile input) into an error.
func CompileJMESPath(expr string) (c *jmespath.JMESPath, err error) {
	if len(expr) > maxJMESPathLength {
		return nil, fmt.Errorf("is longer than %d characters", maxJMESPathLength)
	}
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, errors.New("is not a valid JMESPath expression")
		}
	}()
	c, err = jmespath.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("is not a valid JMESPath expression: %s", syntaxErrorText(err))
	}
	return c, nil
}

func syntaxErrorText(err error) string {
	var se jmespath.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	}
	return "syntax error"
}
