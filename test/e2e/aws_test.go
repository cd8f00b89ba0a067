//go:build e2e

package e2e

import (
	"os"
	"testing"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// motoURL is where test/cluster/up.sh runs moto_server, which provider-aws uses for every AWS API.
const motoURL = "http://127.0.0.1:5055"

// TestAWSProvider: a pod mounts a Secrets Manager secret through provider-aws, authenticated with
// IRSA (its service account's role, a projected token of audience sts.amazonaws.com, moto's STS).
func TestAWSProvider(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/var/run/secrets-store-csi-providers/aws.sock"); err != nil {
		t.Fatalf("provider-aws is not running (up.sh starts it when bin/provider-aws and moto_server exist): %v", err)
	}
	ns := fw.Namespace(t, "aws")
	name := "e2e-" + framework.RandomSuffix()
	value := secretValue("aws")
	sm := secretsmanager.NewFromConfig(sdkaws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: sdkaws.String(motoURL),
	})
	if _, err := sm.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: &name, SecretString: &value}); err != nil {
		t.Fatalf("creating secret %s in moto: %v", name, err)
	}
	_, err := fw.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
			"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sscsi-e2e",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fw.CreateSPC(t, framework.SPC{Name: "aws", Namespace: ns, Provider: "aws", Parameters: map[string]string{
		"region":  "us-east-1",
		"objects": "- objectName: " + name + "\n  objectType: secretsmanager\n",
	}})
	vol := framework.CSIVolume{Name: "secrets", SPC: "aws"}
	pod := framework.BusyboxPod(ns, "app", vol)
	pod.Spec.ServiceAccountName = "app"
	fw.CreatePod(t, pod)
	fw.WaitPodRunning(t, ns, "app", podTimeout)
	if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/"+name); got != value {
		t.Errorf("%s = %q, want %q", name, got, value)
	}
}
