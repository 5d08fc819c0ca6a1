package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The workflow passes actionlint: GitHub Actions' workflow schema (keys,
// types, required fields), expressions and their contexts (matrix,
// strategy, github.event.inputs), action inputs of the actions it uses,
// and job dependencies.
func TestWorkflowIsAValidGitHubActionsWorkflow(t *testing.T) {
	content, err := os.ReadFile("github/soak.yml")
	if err != nil {
		t.Fatal(err)
	}
	errs := lint(t, "github/soak.yml", content)
	for _, e := range errs {
		t.Errorf("%s:%d:%d: %s [%s]", e.Filepath, e.Line, e.Column, e.Message, e.Kind)
	}
	for _, want := range []string{"--shard=auto", "SHARD_INDEX: ${{ matrix.shard }}", "SHARD_COUNT: ${{ strategy.job-total }}", "upload-artifact", "simrun merge"} {
		if !bytes.Contains(content, []byte(want)) {
			t.Errorf("workflow lacks %q", want)
		}
	}
}

// The check is not blind: a workflow with a misspelt key, an unknown
// context and a job that needs a missing job fails it.
func TestWorkflowCheckRejectsABrokenWorkflow(t *testing.T) {
	broken := []byte(`on: push
jobs:
  a:
    runs-on: ubuntu-latest
    needs: nosuchjob
    stepz:
      - run: echo ${{ matrixx.shard }}
`)
	if errs := lint(t, "broken.yml", broken); len(errs) < 2 {
		t.Fatalf("actionlint found %d problems in a broken workflow, want several: %v", len(errs), errs)
	}
}

func lint(t *testing.T, path string, content []byte) []*actionlint.Error {
	t.Helper()
	// No shellcheck or pyflakes: CI has neither, and the schema is the point.
	l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{Shellcheck: "", Pyflakes: ""})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.Lint(path, content, nil)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}

// decodeJob reads a manifest strictly into Kubernetes' own batch/v1 Job
// type: an unknown or misspelt field, or a value of the wrong type, is an
// error, as kubectl apply --validate=strict makes it.
func decodeJob(content []byte) (batchv1.Job, error) {
	var job batchv1.Job
	js, err := yaml.YAMLToJSON(content)
	if err != nil {
		return job, err
	}
	// sigs.k8s.io/json is the decoder the API server uses: field names
	// match case-sensitively, and strict errors name what does not fit.
	strict, err := kjson.UnmarshalStrict(js, &job, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	return job, err
}

func TestManifestIsAValidIndexedJob(t *testing.T) {
	content, err := os.ReadFile("kubernetes/soak-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	job, err := decodeJob(content)
	if err != nil {
		t.Fatalf("not a batch/v1 Job: %v", err)
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" || job.Name == "" {
		t.Fatalf("apiVersion %q kind %q name %q", job.APIVersion, job.Kind, job.Name)
	}
	spec := job.Spec
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion {
		t.Fatal("completionMode is not Indexed: pods get no JOB_COMPLETION_INDEX")
	}
	if spec.Completions == nil || spec.Parallelism == nil || *spec.Parallelism > *spec.Completions {
		t.Fatal("completions and parallelism must be set, parallelism at most completions")
	}
	// Rules the API server enforces for these fields.
	if spec.BackoffLimitPerIndex != nil && spec.MaxFailedIndexes != nil && *spec.MaxFailedIndexes > *spec.Completions {
		t.Error("maxFailedIndexes exceeds completions")
	}
	pod := spec.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever && pod.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("a Job's pods need restartPolicy Never or OnFailure, not %q", pod.RestartPolicy)
	}
	if spec.PodFailurePolicy != nil && pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Error("podFailurePolicy needs restartPolicy Never")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image == "" {
		t.Error("no image")
	}
	if spec.PodFailurePolicy != nil {
		for _, r := range spec.PodFailurePolicy.Rules {
			if r.OnExitCodes != nil && r.OnExitCodes.ContainerName != nil && *r.OnExitCodes.ContainerName != c.Name {
				t.Errorf("podFailurePolicy names container %q, the pod has %q", *r.OnExitCodes.ContainerName, c.Name)
			}
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if n, err := strconv.Atoi(env["SHARD_COUNT"]); err != nil || int32(n) != *spec.Completions {
		t.Errorf("SHARD_COUNT=%q, want the number of completions %d (each index one shard)", env["SHARD_COUNT"], *spec.Completions)
	}
	script := strings.Join(append(c.Command, c.Args...), " ")
	for _, want := range []string{"--shard=auto", "--json", "JOB_COMPLETION_INDEX"} {
		if !strings.Contains(script, want) {
			t.Errorf("container command lacks %q", want)
		}
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounted[m.Name] = true
	}
	for _, v := range pod.Volumes {
		delete(mounted, v.Name)
	}
	if len(mounted) > 0 {
		t.Errorf("mounts of undeclared volumes: %v", mounted)
	}
}

func TestManifestCheckRejectsAMisspeltField(t *testing.T) {
	content, err := os.ReadFile("kubernetes/soak-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	broken := bytes.Replace(content, []byte("completionMode:"), []byte("completionmode:"), 1)
	if _, err := decodeJob(broken); err == nil {
		t.Fatal("a misspelt field decoded")
	}
	wrongType := bytes.Replace(content, []byte("parallelism: 4"), []byte("parallelism: four"), 1)
	if _, err := decodeJob(wrongType); err == nil {
		t.Fatal("a string parallelism decoded")
	}
}
