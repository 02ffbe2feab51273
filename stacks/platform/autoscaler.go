package platform

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

const clusterAutoscalerSA = "cluster-autoscaler"

// clusterAutoscaler lets the node group grow to nodeMaxSize when pods do not fit and shrink when
// nodes are idle. EKS tags a managed node group's Auto Scaling group with
// k8s.io/cluster-autoscaler/enabled and k8s.io/cluster-autoscaler/<cluster> (EKS user guide,
// "Managed node groups"), which auto-discovery finds and the IAM policy requires before it scales.
// The actions follow the autoscaler's AWS guide (cluster-autoscaler/cloudprovider/aws/README.md).
// autoscalerCharts are, per Kubernetes minor version, the Cluster Autoscaler chart versions
// built for it: the chart's appVersion and default image (read from each version's Chart.yaml
// and values.yaml in kubernetes/autoscaler) are that minor version, which the autoscaler's
// must match, and each has the volumeattachments RBAC that images from 1.32 on wait on
// (added in chart 9.46.3: kubernetes/autoscaler#7663). The image comes from the chart.
var autoscalerCharts = map[string][]string{
	"1.32": {"9.46.3", "9.46.4", "9.46.5", "9.46.6"},
	"1.33": {"9.47.0", "9.48.0", "9.49.0", "9.50.0", "9.50.1", "9.51.0"},
}

func clusterAutoscaler(ctx *pulumi.Context, args WorkloadsArgs, parent pulumi.ResourceOrInvokeOption, k8s []pulumi.ResourceOption) error {
	cfg := args.Config
	role, err := args.Cluster.ServiceAccountRole(ctx, "cluster-autoscaler", "kube-system", clusterAutoscalerSA, cfg, iam.GetPolicyDocumentStatementArray{
		iam.GetPolicyDocumentStatementArgs{
			Sid: pulumi.String("Discover"),
			Actions: pulumi.ToStringArray([]string{"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
				"autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities", "autoscaling:DescribeTags",
				"ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions",
				"ec2:GetInstanceTypesFromInstanceRequirements", "eks:DescribeNodegroup"}),
			Resources: pulumi.StringArray{pulumi.String("*")},
		},
		iam.GetPolicyDocumentStatementArgs{
			Sid:       pulumi.String("ScaleThisClustersGroups"),
			Actions:   pulumi.ToStringArray([]string{"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"}),
			Resources: pulumi.StringArray{pulumi.String("*")},
			Conditions: iam.GetPolicyDocumentStatementConditionArray{iam.GetPolicyDocumentStatementConditionArgs{
				Test:     pulumi.String("StringEquals"),
				Variable: pulumi.Sprintf("aws:ResourceTag/k8s.io/cluster-autoscaler/%s", args.Cluster.Name),
				Values:   pulumi.StringArray{pulumi.String("owned")},
			}},
		},
	}, parent)
	if err != nil {
		return err
	}
	_, err = helmv3.NewRelease(ctx, "cluster-autoscaler", &helmv3.ReleaseArgs{
		Name:           pulumi.String("cluster-autoscaler"),
		Chart:          pulumi.String("cluster-autoscaler"),
		Version:        pulumi.String(cfg.ClusterAutoscalerVersion),
		RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String("https://kubernetes.github.io/autoscaler")},
		Namespace:      pulumi.String("kube-system"),
		Values: pulumi.Map{
			"cloudProvider": pulumi.String("aws"),
			"awsRegion":     pulumi.String(cfg.Region),
			"autoDiscovery": pulumi.Map{"clusterName": args.Cluster.Name},
			"rbac": pulumi.Map{"serviceAccount": pulumi.Map{"create": pulumi.Bool(true), "name": pulumi.String(clusterAutoscalerSA),
				"annotations": pulumi.StringMap{"eks.amazonaws.com/role-arn": role.Arn}}},
			"extraArgs": pulumi.Map{
				// The node group spans every zone; keep zones even when scaling.
				"balance-similar-node-groups": pulumi.Bool(true),
				// Pods with emptyDir (/tmp here) may move: they keep nothing there.
				"skip-nodes-with-local-storage": pulumi.Bool(false),
			},
		},
	}, k8s...)
	return err
}
