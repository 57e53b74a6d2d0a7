// Command policycheck evaluates the chart's ValidatingAdmissionPolicy with the API server's own
// admission code (k8s.io/apiserver, the cluster's version), without a cluster:
//
//	policycheck -user system:serviceaccount:<ns>:<sa> -prefix <annotationPrefix> RENDERED.yaml
//
// It type-checks every expression against the Pod schema (as the controller manager does for
// the policy's status), then admits or denies a table of pod updates: annotation keys added,
// changed and removed under and outside the prefix, pods without annotations, labels,
// finalizers, ownerReferences and spec changes, by the operator and by other users. Prints one
// "ok"/"FAIL" line per case, as tests/check_render.py does; exits 1 on a failure.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta/testrestmapper"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/kubernetes/pkg/generated/openapi"
	"sigs.k8s.io/yaml"
)

func main() {
	username := flag.String("user", "", "the operator's service account user name")
	prefix := flag.String("prefix", "", "the annotation prefix (without the slash)")
	flag.Parse()
	if *username == "" || *prefix == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: policycheck -user USER -prefix PREFIX RENDERED.yaml")
		os.Exit(2)
	}
	policy, err := readPolicy(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c := &checks{}
	typeCheck(c, policy)
	validator := compile(policy)
	for _, tc := range cases(*username, *prefix) {
		allowed, message, err := admit(validator, tc)
		switch {
		case err != nil:
			c.check(tc.what, false, err.Error())
		case allowed != tc.allowed:
			c.check(tc.what, false, fmt.Sprintf("allowed=%v, want %v (%s)", allowed, tc.allowed, message))
		case !tc.allowed && tc.inMessage != "" && !strings.Contains(message, tc.inMessage):
			c.check(tc.what, false, fmt.Sprintf("message %q lacks %q", message, tc.inMessage))
		default:
			c.check(tc.what, true, "")
		}
	}
	if c.failed > 0 {
		os.Exit(1)
	}
}

type checks struct{ failed int }

func (c *checks) check(what string, ok bool, why string) {
	if ok {
		fmt.Printf("ok    policy: %s\n", what)
		return
	}
	c.failed++
	fmt.Printf("FAIL  policy: %s: %s\n", what, why)
}

func readPolicy(path string) (*admissionregistrationv1.ValidatingAdmissionPolicy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	docs := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no ValidatingAdmissionPolicy", path)
		}
		if err != nil {
			return nil, err
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, err
		}
		if meta.Kind == "ValidatingAdmissionPolicy" {
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			// Strict: a misspelt field would otherwise be dropped without a word.
			if err := yaml.UnmarshalStrict(doc, &p); err != nil {
				return nil, err
			}
			return &p, nil
		}
	}
}

// typeCheck: what the controller manager writes into the policy's status.typeChecking. A
// warning there means an expression is wrong for pods (a misspelt field, a type mismatch).
func typeCheck(c *checks, p *admissionregistrationv1.ValidatingAdmissionPolicy) {
	checker := &validating.TypeChecker{
		SchemaResolver: resolver.NewDefinitionsSchemaResolver(openapi.GetOpenAPIDefinitions, scheme.Scheme),
		RestMapper:     testrestmapper.TestOnlyStaticRESTMapper(scheme.Scheme),
	}
	warnings := checker.Check(p)
	var text []string
	for _, w := range warnings {
		text = append(text, w.FieldRef+": "+w.Warning)
	}
	c.check("every expression type-checks against v1 Pod", len(warnings) == 0, strings.Join(text, "; "))
}

// compile builds the validator as the API server's admission plugin does (plugin.go
// compilePolicy, strict cost), for a policy without params or authorizer use.
func compile(p *admissionregistrationv1.ValidatingAdmissionPolicy) validating.Validator {
	vars := plugincel.OptionalVariableDeclarations{StrictCost: true}
	env, err := plugincel.NewCompositionEnv(plugincel.VariablesTypeName,
		environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion(), true))
	if err != nil {
		panic(err)
	}
	compiler := plugincel.NewCompositedCompilerFromTemplate(env)
	variables := make([]plugincel.NamedExpressionAccessor, len(p.Spec.Variables))
	for i, v := range p.Spec.Variables {
		variables[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	compiler.CompileAndStoreVariables(variables, vars, environment.StoredExpressions)
	conditions := make([]plugincel.ExpressionAccessor, len(p.Spec.MatchConditions))
	for i := range p.Spec.MatchConditions {
		conditions[i] = (*matchconditions.MatchCondition)(&p.Spec.MatchConditions[i])
	}
	matcher := matchconditions.NewMatcher(compiler.CompileCondition(conditions, vars, environment.StoredExpressions),
		p.Spec.FailurePolicy, "policy", "validate", p.Name)
	validations := make([]plugincel.ExpressionAccessor, len(p.Spec.Validations))
	messages := make([]plugincel.ExpressionAccessor, len(p.Spec.Validations))
	for i, v := range p.Spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	return validating.NewValidator(
		compiler.CompileCondition(validations, vars, environment.StoredExpressions),
		matcher,
		compiler.CompileCondition(nil, vars, environment.StoredExpressions),
		compiler.CompileCondition(messages, vars, environment.StoredExpressions),
		p.Spec.FailurePolicy,
	)
}

type testCase struct {
	what      string
	user      string
	old, new  *corev1.Pod
	allowed   bool
	inMessage string
}

var podGVK = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
var podGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

func admit(v validating.Validator, tc testCase) (bool, string, error) {
	attr := admission.NewAttributesRecord(tc.new, tc.old, podGVK, tc.new.Namespace, tc.new.Name, podGVR, "",
		admission.Update, &metav1.UpdateOptions{}, false, &user.DefaultInfo{Name: tc.user})
	versioned := &admission.VersionedAttributes{
		Attributes: attr, VersionedKind: podGVK, VersionedObject: tc.new, VersionedOldObject: tc.old,
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tc.new.Namespace}}
	result := v.Validate(context.Background(), podGVR, versioned, nil, ns, celconfig.RuntimeCELCostBudget, nil)
	for _, d := range result.Decisions {
		if d.Evaluation == validating.EvalError {
			return false, d.Message, fmt.Errorf("evaluation error: %s", d.Message)
		}
		if d.Action == validating.ActionDeny {
			return false, d.Message, nil
		}
	}
	return true, "", nil
}

// basePod: a workload pod as the operator finds it, with a foreign annotation and one of ours.
func basePod(prefix string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "shop", ResourceVersion: "7",
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"team.example/owner": "shop", prefix + "/old": "reg/old@sha256:aa"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: "u1",
			}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "reg/app:1"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func cases(operator, prefix string) []testCase {
	base := basePod(prefix)
	bare := basePod(prefix)
	bare.Annotations = nil
	ours := basePod(prefix)
	ours.Annotations = map[string]string{prefix + "/old": "x"}
	with := func(from *corev1.Pod, change func(p *corev1.Pod)) *corev1.Pod {
		p := from.DeepCopy()
		change(p)
		return p
	}
	annotate := func(k, v string) func(p *corev1.Pod) {
		return func(p *corev1.Pod) {
			if p.Annotations == nil {
				p.Annotations = map[string]string{}
			}
			p.Annotations[k] = v
		}
	}
	unannotate := func(k string) func(p *corev1.Pod) { return func(p *corev1.Pod) { delete(p.Annotations, k) } }
	// The API server bumps nothing but these on an annotations-only patch.
	bookkeeping := func(p *corev1.Pod) {
		p.ResourceVersion = "8"
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "sbomjob", Operation: metav1.ManagedFieldsOperationUpdate}}
	}
	ok := func(what string, old, new *corev1.Pod) testCase {
		return testCase{what: "allowed: " + what, user: operator, old: old, new: with(new, bookkeeping), allowed: true}
	}
	no := func(what, in string, old, new *corev1.Pod) testCase {
		return testCase{what: "denied: " + what, user: operator, old: old, new: new, inMessage: in}
	}
	c := prefix + "/app"
	return []testCase{
		ok("an annotation under the prefix added", base, with(base, annotate(c, "reg/app@sha256:bb"))),
		ok("two added at once", base, with(base, func(p *corev1.Pod) { annotate(c, "1")(p); annotate(prefix+"/db", "2")(p) })),
		ok("an annotation under the prefix changed", base, with(base, annotate(prefix+"/old", "reg/old@sha256:cc"))),
		ok("an annotation under the prefix removed", base, with(base, unannotate(prefix+"/old"))),
		ok("the first annotation of a pod without any", bare, with(bare, annotate(c, "x"))),
		ok("the last annotation removed (no map left)", ours, with(ours, func(p *corev1.Pod) { p.Annotations = nil })),
		ok("no change at all", base, base.DeepCopy()),
		no("an annotation outside the prefix added", "other.example/x", base, with(base, annotate("other.example/x", "1"))),
		no("one outside added next to one under it", "other.example/x", base,
			with(base, func(p *corev1.Pod) { annotate(c, "1")(p); annotate("other.example/x", "1")(p) })),
		no("an annotation outside the prefix changed", "team.example/owner", base, with(base, annotate("team.example/owner", "evil"))),
		no("an annotation outside the prefix removed", "team.example/owner", base, with(base, unannotate("team.example/owner"))),
		no("every annotation removed (no map left)", "team.example/owner", base, with(base, func(p *corev1.Pod) { p.Annotations = nil })),
		no("the first annotation of a bare pod, outside the prefix", "x.example/y", bare, with(bare, annotate("x.example/y", "1"))),
		no("a key that only starts like the prefix", prefix+".evil/x", base, with(base, annotate(prefix+".evil/x", "1"))),
		no("the prefix without the slash", prefix, base, with(base, annotate(prefix, "1"))),
		no("the prefix as a subdomain of another", "x."+prefix+"/y", base, with(base, annotate("x."+prefix+"/y", "1"))),
		no("the image changed", "spec", base, with(base, func(p *corev1.Pod) { p.Spec.Containers[0].Image = "evil/app:1" })),
		no("the image changed next to our annotation", "spec", base,
			with(base, func(p *corev1.Pod) { annotate(c, "1")(p); p.Spec.Containers[0].Image = "evil/app:1" })),
		no("activeDeadlineSeconds set", "spec", base, with(base, func(p *corev1.Pod) { d := int64(1); p.Spec.ActiveDeadlineSeconds = &d })),
		no("a label changed", "labels", base, with(base, func(p *corev1.Pod) { p.Labels["app"] = "other" })),
		no("a label added", "labels", base, with(base, func(p *corev1.Pod) { p.Labels["x"] = "y" })),
		no("the labels removed", "labels", base, with(base, func(p *corev1.Pod) { p.Labels = nil })),
		no("a label on a pod without labels", "labels", with(base, func(p *corev1.Pod) { p.Labels = nil }),
			with(base, func(p *corev1.Pod) { p.Labels = map[string]string{"x": "y"} })),
		no("a finalizer added", "finalizers", base, with(base, func(p *corev1.Pod) { p.Finalizers = []string{"x.example/hold"} })),
		no("the ownerReferences removed", "ownerReferences", base, with(base, func(p *corev1.Pod) { p.OwnerReferences = nil })),
		{what: "not matched: another user may change anything", user: "system:serviceaccount:shop:deployer",
			old: base, new: with(base, func(p *corev1.Pod) { annotate("other.example/x", "1")(p); p.Labels["x"] = "y" }), allowed: true},
		{what: "not matched: a service account of the same name in another namespace", allowed: true,
			user: strings.Replace(operator, ":serviceaccount:", ":serviceaccount:x", 1),
			old:  base, new: with(base, annotate("other.example/x", "1"))},
	}
}
