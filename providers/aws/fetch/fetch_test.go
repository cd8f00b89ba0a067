package fetch

import (
	"testing"

	"github.com/sscsi/secrets-store/providers/aws/params"
)

func TestSecretCurrentStageIsLatest(t *testing.T) {
	objs, err := params.ParseObjects("- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: a, objectType: secretsmanager, objectAlias: y, objectVersionLabel: AWSCURRENT}", "")
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].Ref() != objs[1].Ref() {
		t.Errorf("refs differ: %+v %+v", objs[0].Ref(), objs[1].Ref())
	}
	if jobs := planJobs([]params.Ref{objs[0].Ref()}, true); len(jobs) != 1 || jobs[0].api != "BatchGetSecretValue" {
		t.Errorf("jobs = %+v", jobs)
	}
}
