// Package objtemplate runs Go text/template programs written by
// SecretProviderClass authors (provider-aws's objectTemplate) with a bounded
// cost, so that one class cannot pin a provider core or fill its memory.
//
// text/template can loop for ever ({{range 1000000000}}), nest ranges over a
// large value, recurse through {{template}}, and grow strings through
// printf without writing a byte. A timeout would leave the goroutine
// running, so the program itself is made finite instead:
//
//   - {{define}}, {{template}} and {{block}} are refused at parse time (no
//     recursion);
//   - every list of the parse tree (the template body, each if/range/with
//     branch) is instrumented with a step counter before each node, so at
//     most MaxSteps nodes run per execution, whatever ranges over what;
//   - printf, print, println, html, js and urlquery are replaced by versions
//     that refuse width or precision above 1000 and '*', and that count
//     the bytes they produce against MaxFuncBytes;
//   - the output is capped at MaxOutput.
//
// Execution stops with ErrTooCostly at the first bound reached. The source
// is capped at MaxSource bytes.
package objtemplate

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/url"
	"strings"
	ttemplate "text/template"
	"text/template/parse"
)

// Bounds of one template and one execution.
const (
	// MaxSource is the longest template accepted (bytes).
	MaxSource = 16 << 10
	// MaxSteps is the most template nodes one execution runs.
	MaxSteps = 50_000
	// MaxOutput is the largest output (bytes).
	MaxOutput = 4 << 20
	// MaxFuncBytes is the most bytes the formatting functions may produce
	// in one execution (their results can be kept in variables without
	// being written).
	MaxFuncBytes = 16 << 20
	// maxWidth bounds a printf width or precision.
	maxWidth = 1000
)

// Errors; decide with errors.Is.
var (
	// ErrInvalid: the template is refused at parse time.
	ErrInvalid = errors.New("invalid objectTemplate")
	// ErrTooCostly: an execution reached a bound and was stopped.
	ErrTooCostly = errors.New("objectTemplate exceeds its cost bounds")
	// ErrFailed: the template failed on the data (a missing key, a type
	// error). The message does not quote the data.
	ErrFailed = errors.New("objectTemplate failed on the object's value")
)

const stepFunc = "__objtemplate_step"

// Template is a parsed, instrumented template. It is safe for concurrent
// Execute calls.
type Template struct {
	t *ttemplate.Template
}

// Parse checks and instruments text. Errors wrap ErrInvalid and say what
// is wrong, never quoting more than the template itself.
func Parse(name, text string) (*Template, error) {
	if len(text) > MaxSource {
		return nil, fmt.Errorf("%w: it is %d bytes; at most %d are allowed", ErrInvalid, len(text), MaxSource)
	}
	t, err := ttemplate.New(name).Option("missingkey=error").Funcs(funcs(nil)).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w: does not parse as a Go template: %v", ErrInvalid, err)
	}
	if n := len(t.Templates()); n > 1 || t.Tree == nil {
		return nil, fmt.Errorf("%w: {{define}} and {{block}} are not allowed", ErrInvalid)
	}
	step, err := stepNode()
	if err != nil {
		return nil, err
	}
	if err := instrument(t.Tree.Root, step); err != nil {
		return nil, err
	}
	return &Template{t: t}, nil
}

// stepNode is the action {{__objtemplate_step}} to insert.
func stepNode() (parse.Node, error) {
	h, err := ttemplate.New("step").Funcs(ttemplate.FuncMap{stepFunc: func() string { return "" }}).Parse("{{" + stepFunc + "}}")
	if err != nil {
		return nil, err
	}
	return h.Tree.Root.Nodes[0], nil
}

// instrument puts a step before every node of every list under n and
// refuses {{template}}.
func instrument(n parse.Node, step parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		nodes := make([]parse.Node, 0, 2*len(n.Nodes)+1)
		nodes = append(nodes, step.Copy())
		for _, c := range n.Nodes {
			if err := instrument(c, step); err != nil {
				return err
			}
			nodes = append(nodes, c, step.Copy())
		}
		n.Nodes = nodes
	case *parse.IfNode:
		return branches(&n.BranchNode, step)
	case *parse.RangeNode:
		return branches(&n.BranchNode, step)
	case *parse.WithNode:
		return branches(&n.BranchNode, step)
	case *parse.TemplateNode:
		return fmt.Errorf("%w: {{template %q}} is not allowed", ErrInvalid, n.Name)
	}
	return nil
}

func branches(b *parse.BranchNode, step parse.Node) error {
	if err := instrument(b.List, step); err != nil {
		return err
	}
	if b.ElseList != nil {
		return instrument(b.ElseList, step)
	}
	return nil
}

// budget is the cost account of one execution.
type budget struct {
	steps     int
	funcBytes int
}

func (b *budget) step() (string, error) {
	b.steps++
	if b.steps > MaxSteps {
		return "", fmt.Errorf("%w: more than %d steps", ErrTooCostly, MaxSteps)
	}
	return "", nil
}

// produced charges n bytes of function output.
func (b *budget) produced(n int) error {
	b.funcBytes += n
	if b.funcBytes > MaxFuncBytes || n > MaxOutput {
		return fmt.Errorf("%w: its functions produce more than %d bytes", ErrTooCostly, MaxFuncBytes)
	}
	return nil
}

// size is an upper bound of an argument's formatted size without building
// strings for strings and byte slices.
func size(a any) int {
	switch v := a.(type) {
	case string:
		return len(v)
	case []byte:
		return len(v)
	default:
		return len(fmt.Sprint(v)) // JSON values: bounded by the object's size
	}
}

func argsSize(args []any) int {
	n := 0
	for _, a := range args {
		n += size(a)
	}
	return n
}

// checkFormat refuses '*' and widths or precisions above maxWidth.
func checkFormat(format string) error {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		num := 0
		for i++; i < len(format); i++ {
			c := format[i]
			switch {
			case c == '*':
				return fmt.Errorf("%w: printf widths from arguments (*) are not allowed", ErrInvalid)
			case c >= '0' && c <= '9':
				num = num*10 + int(c-'0')
				if num > maxWidth {
					return fmt.Errorf("%w: printf widths and precisions above %d are not allowed", ErrInvalid, maxWidth)
				}
			case c == '.' || c == '+' || c == '-' || c == '#' || c == ' ' || c == '[' || c == ']':
				if c == '.' {
					num = 0
				}
			default:
				goto next
			}
		}
	next:
	}
	return nil
}

// funcs are the formatting builtins with bounded cost; b is nil at parse
// time (only the names matter then).
func funcs(b *budget) ttemplate.FuncMap {
	charge := func(s string) (string, error) {
		if b != nil {
			if err := b.produced(len(s)); err != nil {
				return "", err
			}
		}
		return s, nil
	}
	pre := func(n int) error {
		if b != nil && n > MaxOutput {
			return fmt.Errorf("%w: a function's arguments exceed %d bytes", ErrTooCostly, MaxOutput)
		}
		return nil
	}
	step := func() (string, error) { return "", nil }
	if b != nil {
		step = b.step
	}
	return ttemplate.FuncMap{
		stepFunc: step,
		"printf": func(format string, args ...any) (string, error) {
			if err := checkFormat(format); err != nil {
				return "", err
			}
			if err := pre(len(format) + argsSize(args)); err != nil {
				return "", err
			}
			return charge(fmt.Sprintf(format, args...))
		},
		"print": func(args ...any) (string, error) {
			if err := pre(argsSize(args)); err != nil {
				return "", err
			}
			return charge(fmt.Sprint(args...))
		},
		"println": func(args ...any) (string, error) {
			if err := pre(argsSize(args) + len(args)); err != nil {
				return "", err
			}
			return charge(fmt.Sprintln(args...))
		},
		"html": func(args ...any) (string, error) {
			if err := pre(6 * argsSize(args)); err != nil {
				return "", err
			}
			return charge(template.HTMLEscapeString(fmt.Sprint(args...)))
		},
		"js": func(args ...any) (string, error) {
			if err := pre(6 * argsSize(args)); err != nil {
				return "", err
			}
			return charge(template.JSEscapeString(fmt.Sprint(args...)))
		},
		"urlquery": func(args ...any) (string, error) {
			if err := pre(3 * argsSize(args)); err != nil {
				return "", err
			}
			return charge(url.QueryEscape(fmt.Sprint(args...)))
		},
	}
}

// limitedBuffer refuses writes past MaxOutput.
type limitedBuffer struct{ bytes.Buffer }

var errOutput = fmt.Errorf("%w: output larger than %d bytes", ErrTooCostly, MaxOutput)

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.Len()+len(p) > MaxOutput {
		return 0, errOutput
	}
	return l.Buffer.Write(p)
}

// Execute runs the template over data within the bounds. Errors wrap
// ErrTooCostly or ErrFailed and never quote data.
func (t *Template) Execute(data any) ([]byte, error) {
	b := &budget{}
	c, err := t.t.Clone()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFailed, err)
	}
	c.Funcs(funcs(b))
	out := &limitedBuffer{}
	if err := c.Execute(out, data); err != nil {
		// Keep only our own message: template errors can quote data.
		for _, sentinel := range []error{ErrTooCostly, ErrInvalid} {
			if errors.Is(err, sentinel) {
				msg := err.Error()
				detail := msg[strings.LastIndex(msg, sentinel.Error())+len(sentinel.Error()):]
				return nil, fmt.Errorf("%w%s", sentinel, detail)
			}
		}
		return nil, fmt.Errorf("%w (check the keys it uses)", ErrFailed)
	}
	return out.Bytes(), nil
}
