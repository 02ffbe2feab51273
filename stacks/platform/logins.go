package platform

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	batchv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/batch/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// BootstrapJob is the Job that makes the data services' database logins: the users image run as
// `users bootstrap-db` (package dbbootstrap), as the RDS master user.
const BootstrapJob = "db-bootstrap"

// dbLogins are the data services' login secrets and the Job that fills them.
type dbLogins struct {
	secrets map[string]*secretsmanager.Secret
	job     pulumi.Resource
}

// databaseLogins declares a secret per data service (empty: the Job writes the login's password
// into it once), and the Job, whose IRSA role may read the master user's secret and read and
// write these three, nothing else. The Job has no sidecar: it would keep the pod from completing,
// and the Job reaches nothing in the mesh.
func databaseLogins(ctx *pulumi.Context, args WorkloadsArgs, ns string, meta func(string, pulumi.StringMap) *metav1.ObjectMetaArgs,
	k8s []pulumi.ResourceOption, parent pulumi.ResourceOrInvokeOption) (*dbLogins, error) {
	cfg := args.Config
	l := &dbLogins{secrets: map[string]*secretsmanager.Secret{}}
	recovery := 0 // dev: a destroyed stack's names are free again at once
	if cfg.Prod() {
		recovery = 7
	}
	var arns pulumi.StringArray
	var pairs []any
	format := ""
	for _, svc := range sortedKeys(dataServices) {
		s, err := secretsmanager.NewSecret(ctx, svc+"-db", &secretsmanager.SecretArgs{
			Name:                 pulumi.String(cfg.Name("db-" + svc)),
			Description:          pulumi.String("the " + svc + " service's database login, written by the " + BootstrapJob + " Job"),
			RecoveryWindowInDays: pulumi.Int(recovery),
			Tags:                 cfg.Tags("db-" + svc),
		}, parent)
		if err != nil {
			return nil, err
		}
		l.secrets[svc] = s
		arns = append(arns, s.Arn)
		if format != "" {
			format += ","
		}
		format += svc + "=%s"
		pairs = append(pairs, s.Arn)
	}
	role, err := args.Cluster.ServiceAccountRole(ctx, BootstrapJob, ns, BootstrapJob, cfg, iam.GetPolicyDocumentStatementArray{
		iam.GetPolicyDocumentStatementArgs{
			Sid:       pulumi.String("ReadTheMasterUsersSecret"),
			Actions:   pulumi.ToStringArray([]string{"secretsmanager:GetSecretValue"}),
			Resources: pulumi.StringArray{args.Database.SecretArn},
		},
		iam.GetPolicyDocumentStatementArgs{
			Sid:       pulumi.String("WriteTheServicesLogins"),
			Actions:   pulumi.ToStringArray([]string{"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"}),
			Resources: arns,
		},
	}, parent)
	if err != nil {
		return nil, err
	}
	labels := pulumi.StringMap{"app": pulumi.String(BootstrapJob), "app.kubernetes.io/part-of": pulumi.String("shopmesh")}
	saMeta := meta(BootstrapJob, labels)
	saMeta.Annotations = pulumi.StringMap{"eks.amazonaws.com/role-arn": role.Arn}
	sa, err := corev1.NewServiceAccount(ctx, BootstrapJob, &corev1.ServiceAccountArgs{
		Metadata: saMeta, AutomountServiceAccountToken: pulumi.Bool(false),
	}, k8s...)
	if err != nil {
		return nil, err
	}
	env := corev1.EnvVarArray{
		corev1.EnvVarArgs{Name: pulumi.String("DATABASE_URL"), Value: databaseURL(args.Database)},
		corev1.EnvVarArgs{Name: pulumi.String("DATABASE_SECRET_ARN"), Value: args.Database.SecretArn},
		corev1.EnvVarArgs{Name: pulumi.String("DATABASE_LOGINS"), Value: pulumi.Sprintf(format, pairs...)},
		corev1.EnvVarArgs{Name: pulumi.String("AWS_REGION"), Value: pulumi.String(cfg.Region)},
	}
	// A Job's pod template cannot change: a new one replaces it, and runs again (the bootstrap
	// changes nothing that is already right).
	job, err := batchv1.NewJob(ctx, BootstrapJob, &batchv1.JobArgs{
		Metadata: meta(BootstrapJob, labels),
		Spec: &batchv1.JobSpecArgs{
			BackoffLimit: pulumi.Int(6),
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{Labels: labels, Annotations: pulumi.StringMap{"sidecar.istio.io/inject": pulumi.String("false")}},
				Spec: &corev1.PodSpecArgs{
					ServiceAccountName:           sa.Metadata.Name(),
					AutomountServiceAccountToken: pulumi.Bool(false),
					RestartPolicy:                pulumi.String("OnFailure"),
					SecurityContext:              podSecurity(),
					Containers: corev1.ContainerArray{corev1.ContainerArgs{
						Name:            pulumi.String(BootstrapJob),
						Image:           imageRef(ctx, cfg, args.Registry, "users", parent),
						ImagePullPolicy: pulumi.String("IfNotPresent"),
						Args:            pulumi.StringArray{pulumi.String("bootstrap-db")},
						Env:             env,
						Resources: &corev1.ResourceRequirementsArgs{
							Requests: pulumi.StringMap{"cpu": pulumi.String("50m"), "memory": pulumi.String("64Mi")},
							Limits:   pulumi.StringMap{"cpu": pulumi.String("500m"), "memory": pulumi.String("128Mi")},
						},
						SecurityContext: containerSecurity(),
					}},
				},
			},
		},
	}, append(append([]pulumi.ResourceOption{}, k8s...), pulumi.DeleteBeforeReplace(true))...)
	if err != nil {
		return nil, err
	}
	l.job = job
	return l, nil
}
