package params

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jmespath/go-jmespath"
)

// Bounds of a jmesPath expression. Real ones are a path of a few words
// ("db.password", "[?name=='x'].value | [0]"). Projections, flattens,
// multi-select lists and hashes and sort_by/max_by/min_by/map fan out: a
// chain of them multiplies the value's size at each step ([@,@,@][][@,@,@][]
// ... is exponential), so an expression may hold at most MaxJMESPathFanOut
// of them; with the length bound that keeps the worst evaluation over a
// 64 KiB value within the figure in docs/security.md.
const (
	maxJMESPathLength = 256
	// MaxJMESPathFanOut is the most fan-out nodes of one expression.
	MaxJMESPathFanOut = 2
)

// fanOutNodes are the AST node kinds that fan out, as go-jmespath names
// them in its parse tree dump (its AST fields are not exported).
var fanOutNodes = []string{"ASTProjection", "ASTFilterProjection", "ASTValueProjection", "ASTFlatten", "ASTMultiSelectList", "ASTMultiSelectHash", "ASTExpRef"}

// fanOut counts the fan-out nodes of expr's parse tree.
func fanOut(expr string) (int, error) {
	ast, err := jmespath.NewParser().Parse(expr)
	if err != nil {
		return 0, err
	}
	dump := ast.String()
	n := 0
	for _, k := range fanOutNodes {
		n += strings.Count(dump, k+" {")
	}
	return n, nil
}

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
	n, err := fanOut(expr)
	if err != nil {
		return nil, fmt.Errorf("is not a valid JMESPath expression: %s", syntaxErrorText(err))
	}
	if n > MaxJMESPathFanOut {
		return nil, fmt.Errorf("has %d projections, flattens, multi-selects or expression references; at most %d are allowed (their cost multiplies)", n, MaxJMESPathFanOut)
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
