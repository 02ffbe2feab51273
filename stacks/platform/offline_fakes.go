package platform

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	awseks "github.com/pulumi/pulumi-aws/sdk/v6/go/aws/eks"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// fakeAccount is the AWS account id offline plans use.
const fakeAccount = "123456789012"

// fakeOutputs returns the attributes AWS would compute for a new resource, so that the
// program's references to them (ARNs, DNS names, URLs) hold plausible values offline.
func fakeOutputs(m *mocks, typ, name string, in resource.PropertyMap) map[string]any {
	if v, ok := in["name"]; ok && v.IsString() && v.StringValue() != "" {
		name = v.StringValue()
	}
	service := ""
	if parts := strings.SplitN(typ, ":", 3); len(parts) == 3 && parts[0] == "aws" {
		service, _, _ = strings.Cut(parts[1], "/")
	}
	out := map[string]any{}
	if service != "" {
		out["arn"] = fmt.Sprintf("arn:aws:%s:%s:%s:%s/%s", service, m.region, fakeAccount, strings.ToLower(typ[strings.LastIndex(typ, ":")+1:]), name)
	}
	switch typ {
	case "aws:iam/role:Role":
		out["arn"], out["name"] = "arn:aws:iam::"+fakeAccount+":role/"+name, name
	case "aws:iam/policy:Policy": // IAM ARNs name no region
		out["arn"] = "arn:aws:iam::" + fakeAccount + ":policy/" + str(in, "name")
	case "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
		out["arn"] = "arn:aws:iam::" + fakeAccount + ":oidc-provider/" + strings.TrimPrefix(str(in, "url"), "https://")
	case "aws:kms/key:Key":
		out["keyId"] = name + "-key-id"
	case "aws:cloudwatch/logGroup:LogGroup":
		out["arn"] = fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s", m.region, fakeAccount, name)
	case "aws:ecr/repository:Repository":
		out["repositoryUrl"] = fmt.Sprintf("%s.dkr.ecr.%s.amazonaws.com/%s", fakeAccount, m.region, name)
	case "aws:lb/loadBalancer:LoadBalancer":
		out["dnsName"] = fmt.Sprintf("%s-0123456789.elb.%s.amazonaws.com", name, m.region)
		out["arnSuffix"] = "net/" + name + "/0123456789abcdef"
	case "aws:lb/targetGroup:TargetGroup":
		out["arnSuffix"] = "targetgroup/" + name + "/0123456789abcdef"
	case "aws:elasticache/replicationGroup:ReplicationGroup":
		id := str(in, "replicationGroupId")
		out["arn"] = fmt.Sprintf("arn:aws:elasticache:%s:%s:replicationgroup:%s", m.region, fakeAccount, id)
		out["primaryEndpointAddress"] = fmt.Sprintf("master.%s.c0ffee.%s.cache.amazonaws.com", id, m.region)
	case "aws:elasticache/user:User":
		out["arn"] = fmt.Sprintf("arn:aws:elasticache:%s:%s:user:%s", m.region, fakeAccount, str(in, "userId"))
	case "aws:rds/instance:Instance":
		host := fmt.Sprintf("%s.c0ffee.%s.rds.amazonaws.com", name, m.region)
		out["address"], out["endpoint"], out["port"] = host, host+":5432", 5432
		out["masterUserSecrets"] = []any{map[string]any{
			"secretArn":    fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:rds!db-%s", m.region, fakeAccount, name),
			"secretStatus": "active", "kmsKeyId": "aws/secretsmanager",
		}}
	case "aws:eks/cluster:Cluster":
		vpc := map[string]any{}
		if v, ok := in["vpcConfig"]; ok && v.IsObject() {
			vpc = plainMap(v.ObjectValue())
		}
		vpc["clusterSecurityGroupId"] = "sg-" + name + "-cluster"
		out["vpcConfig"] = vpc
		out["endpoint"] = fmt.Sprintf("https://0123456789ABCDEF0123456789ABCDEF.gr7.%s.eks.amazonaws.com", m.region)
		out["certificateAuthority"] = map[string]any{"data": "T0ZGTElORQ=="}
	case "aws:apigateway/restApi:RestApi":
		out["rootResourceId"] = name + "-root"
		out["executionArn"] = fmt.Sprintf("arn:aws:execute-api:%s:%s:%s-id", m.region, fakeAccount, name)
	case "aws:apigateway/stage:Stage":
		api, stage := str(in, "restApi"), str(in, "stageName")
		out["invokeUrl"] = fmt.Sprintf("https://%s.execute-api.%s.amazonaws.com/%s", api, m.region, stage)
		out["arn"] = fmt.Sprintf("arn:aws:apigateway:%s::/restapis/%s/stages/%s", m.region, api, stage)
	}
	return out
}

// eksStandIns registers, through the program's own context, the children that pulumi-eks
// would create and that the program reads back as resources (EksCluster, Core.OidcProvider),
// and returns references to them. A remote component has no children under mocks; without
// real resources behind these references the outputs would be nil or never resolve.
func (m *mocks) eksStandIns(args pulumi.MockResourceArgs) (resource.PropertyMap, error) {
	in := args.Inputs
	name := str(in, "name")
	if name == "" {
		name = args.Name
	}
	var cidrs pulumi.StringArray
	for _, c := range strs(in, "publicAccessCidrs") {
		cidrs = append(cidrs, pulumi.String(c))
	}
	var subnets, logTypes pulumi.StringArray
	for _, s := range strs(in, "privateSubnetIds") {
		subnets = append(subnets, pulumi.String(s))
	}
	for _, l := range strs(in, "enabledClusterLogTypes") {
		logTypes = append(logTypes, pulumi.String(l))
	}
	clusterArgs := &awseks.ClusterArgs{
		Name:    pulumi.String(name),
		RoleArn: pulumi.String("arn:aws:iam::" + fakeAccount + ":role/" + name + "-eksRole"),
		Version: pulumi.String(str(in, "version")),
		VpcConfig: awseks.ClusterVpcConfigArgs{
			SubnetIds:             subnets,
			EndpointPrivateAccess: pulumi.Bool(boolean(in, "endpointPrivateAccess")),
			EndpointPublicAccess:  pulumi.Bool(boolean(in, "endpointPublicAccess")),
			PublicAccessCidrs:     cidrs,
		},
		EnabledClusterLogTypes: logTypes,
	}
	if key := str(in, "encryptionConfigKeyArn"); key != "" {
		clusterArgs.EncryptionConfig = awseks.ClusterEncryptionConfigArgs{
			Provider:  awseks.ClusterEncryptionConfigProviderArgs{KeyArn: pulumi.String(key)},
			Resources: pulumi.StringArray{pulumi.String("secrets")},
		}
	}
	cluster, err := awseks.NewCluster(m.ctx, args.Name+"-eksCluster", clusterArgs)
	if err != nil {
		return nil, err
	}
	oidcURL := fmt.Sprintf("https://oidc.eks.%s.amazonaws.com/id/OFFLINE%X", m.region, len(name))
	oidc, err := iam.NewOpenIdConnectProvider(m.ctx, args.Name+"-oidcProvider", &iam.OpenIdConnectProviderArgs{
		Url:             pulumi.String(oidcURL),
		ClientIdLists:   pulumi.StringArray{pulumi.String("sts.amazonaws.com")},
		ThumbprintLists: pulumi.StringArray{pulumi.String("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")},
	})
	if err != nil {
		return nil, err
	}
	clusterRef, err := m.await(cluster)
	if err != nil {
		return nil, err
	}
	oidcRef, err := m.await(oidc)
	if err != nil {
		return nil, err
	}
	m.markStandIn(args.Name, clusterRef, oidcRef)

	endpoint := "https://" + name + ".gr7.eks.offline"
	kubeconfig := map[string]any{
		"apiVersion": "v1", "kind": "Config",
		"clusters":        []any{map[string]any{"name": name, "cluster": map[string]any{"server": endpoint, "certificate-authority-data": "T0ZGTElORQ=="}}},
		"contexts":        []any{map[string]any{"name": name, "context": map[string]any{"cluster": name, "user": name}}},
		"current-context": name,
		"users": []any{map[string]any{"name": name, "user": map[string]any{"exec": map[string]any{
			"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
			"args": []any{"eks", "get-token", "--cluster-name", name}}}}},
	}
	kubeJSON, err := json.Marshal(kubeconfig)
	if err != nil {
		return nil, err
	}
	return resource.PropertyMap{
		"eksCluster":     clusterRef,
		"kubeconfigJson": resource.NewProperty(string(kubeJSON)),
		"kubeconfig":     resource.NewPropertyValue(kubeconfig),
		"core": resource.NewProperty(resource.PropertyMap{
			"cluster":          clusterRef,
			"oidcProvider":     oidcRef,
			"endpoint":         resource.NewProperty(endpoint),
			"vpcId":            in["vpcId"],
			"privateSubnetIds": in["privateSubnetIds"],
			"subnetIds":        in["privateSubnetIds"],
		}),
	}, nil
}

// await waits for a stand-in's registration and returns a reference to it.
func (m *mocks) await(r pulumi.CustomResource) (resource.PropertyValue, error) {
	type result struct{ urn, id string }
	ch := make(chan result, 1)
	pulumi.All(r.URN(), r.ID()).ApplyT(func(v []any) error {
		ch <- result{string(v[0].(pulumi.URN)), string(v[1].(pulumi.ID))}
		return nil
	})
	select {
	case got := <-ch:
		return resource.MakeCustomResourceReference(resource.URN(got.urn), resource.ID(got.id), ""), nil
	case <-time.After(30 * time.Second):
		return resource.PropertyValue{}, fmt.Errorf("offline plan: stand-in %T never registered", r)
	}
}

// markStandIn flags the stand-ins and files them under the component they stand in for.
func (m *mocks) markStandIn(component string, refs ...resource.PropertyValue) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var parent string
	for _, r := range m.records {
		if r.Type == "eks:index:Cluster" && r.Name == component {
			parent = r.URN
		}
	}
	for _, ref := range refs {
		urn := string(ref.ResourceReferenceValue().URN)
		for i := range m.records {
			if m.records[i].URN == urn {
				m.records[i].StandIn, m.records[i].Parent = true, parent
			}
		}
	}
}

// renderPolicyDocument turns getPolicyDocument's arguments into the IAM JSON AWS would
// return, so that offline plans carry the real policies.
func renderPolicyDocument(args resource.PropertyMap) (string, error) {
	var statements []any
	if v, ok := args["statements"]; ok && v.IsArray() {
		for _, sv := range v.ArrayValue() {
			s := sv.ObjectValue()
			st := map[string]any{"Effect": "Allow"}
			if e := str(s, "effect"); e != "" {
				st["Effect"] = e
			}
			if sid := str(s, "sid"); sid != "" {
				st["Sid"] = sid
			}
			if a := strs(s, "actions"); len(a) > 0 {
				st["Action"] = a
			}
			if r := strs(s, "resources"); len(r) > 0 {
				st["Resource"] = r
			}
			if p, ok := s["principals"]; ok && p.IsArray() {
				principals := map[string]any{}
				for _, pv := range p.ArrayValue() {
					po := pv.ObjectValue()
					principals[str(po, "type")] = strs(po, "identifiers")
				}
				st["Principal"] = principals
			}
			if c, ok := s["conditions"]; ok && c.IsArray() {
				conds := map[string]map[string]any{}
				for _, cv := range c.ArrayValue() {
					co := cv.ObjectValue()
					test := str(co, "test")
					if conds[test] == nil {
						conds[test] = map[string]any{}
					}
					conds[test][str(co, "variable")] = strs(co, "values")
				}
				st["Condition"] = conds
			}
			statements = append(statements, st)
		}
	}
	b, err := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": statements})
	return string(b), err
}

func str(pm resource.PropertyMap, key resource.PropertyKey) string {
	v, ok := pm[key]
	for ok && v.IsSecret() {
		v = v.SecretValue().Element
	}
	if ok && v.IsString() {
		return v.StringValue()
	}
	return ""
}

func strs(pm resource.PropertyMap, key resource.PropertyKey) []string {
	v, ok := pm[key]
	if !ok || !v.IsArray() {
		return nil
	}
	var out []string
	for _, e := range v.ArrayValue() {
		if e.IsString() {
			out = append(out, e.StringValue())
		}
	}
	return out
}

func boolean(pm resource.PropertyMap, key resource.PropertyKey) bool {
	v, ok := pm[key]
	return ok && v.IsBool() && v.BoolValue()
}
