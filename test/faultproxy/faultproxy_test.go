package faultproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProxyCountsAndInjects(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "{}") }))
	defer backend.Close()
	p, err := New(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Inject(Rule{API: "secretsmanager.GetSecretValue", Region: "us-west-2", Status: 400, Code: "ThrottlingException", Times: 1})
	call := func(target, region, body string) int {
		req, _ := http.NewRequest(http.MethodPost, p.URL, strings.NewReader(body))
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		if region != "" {
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/"+region+"/secretsmanager/aws4_request, SignedHeaders=host, Signature=x")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := call("secretsmanager.GetSecretValue", "us-west-2", "{}"); s != 400 {
		t.Errorf("first call status = %d, want the injected 400", s)
	}
	if s := call("secretsmanager.GetSecretValue", "us-west-2", "{}"); s != 200 {
		t.Errorf("second call status = %d, want 200 (rule used up)", s)
	}
	call("AmazonSSM.GetParameters", "us-east-1", "{}")
	call("", "", "Action=AssumeRoleWithWebIdentity&Version=2011-06-15")
	want := map[string]int{"secretsmanager.GetSecretValue@us-west-2": 2, "ssm.GetParameters@us-east-1": 1, "sts.AssumeRoleWithWebIdentity@": 1}
	got := p.CountsByRegion()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counts = %v, want %v", got, want)
		}
	}
	if p.Total() != 4 {
		t.Errorf("total = %d", p.Total())
	}
}
