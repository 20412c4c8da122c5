package compose

import (
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/stream"
	natsconf "github.com/nats-io/nats-server/v2/conf"
)

// The Kubernetes manifests (deploy/k8s) are built with kustomize's own
// library, as `kubectl apply -k` does, and checked without a cluster:
// every environment variable a darklaunch container gets (env and the
// ConfigMaps of envFrom) is one its configuration struct reads; both
// probes of each service hit a route its admin server serves, on the
// port its admin address setting gives; every file setting points into
// a mounted Secret, and no Secret is written in the manifests; resources
// are requested, a PodDisruptionBudget covers each Deployment; the
// production overlay runs three NATS servers with NATS_REPLICAS=3 and
// scales the workers with KEDA on their own stream's consumer.

// adminRoutes are the GET routes of each service's admin server:
// pkg/admin serves /healthz, /readyz and /metrics, the mirror adds /livez
// (services/mirror/mirror.go).
var adminRoutes = map[string][]string{
	"mirror":        {"/healthz", "/readyz", "/metrics", "/livez"},
	"shadow-runner": {"/healthz", "/readyz", "/metrics"},
	"comparator":    {"/healthz", "/readyz", "/metrics"},
	"reporter":      {"/healthz", "/readyz", "/metrics"},
}

// k8s objects, as much of them as the checks read.
type (
	object struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
		Spec struct {
			Replicas *int            `json:"replicas"`
			Selector *selector       `json:"selector"`
			Template *podTemplate    `json:"template"`
			Type     string          `json:"type"`
			Ports    []servicePort   `json:"ports"`
			Target   *scaleTargetRef `json:"scaleTargetRef"`
			Triggers []trigger       `json:"triggers"`
		} `json:"spec"`
	}
	selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	podTemplate struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Containers []container `json:"containers"`
			Volumes    []volume    `json:"volumes"`
		} `json:"spec"`
	}
	container struct {
		Name    string `json:"name"`
		Image   string `json:"image"`
		EnvFrom []struct {
			ConfigMapRef *struct{ Name string } `json:"configMapRef"`
			SecretRef    *struct{ Name string } `json:"secretRef"`
		} `json:"envFrom"`
		Env []struct {
			Name      string          `json:"name"`
			Value     *string         `json:"value"`
			ValueFrom *map[string]any `json:"valueFrom"`
		} `json:"env"`
		Ports []struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
		} `json:"ports"`
		ReadinessProbe *probe `json:"readinessProbe"`
		LivenessProbe  *probe `json:"livenessProbe"`
		Resources      struct {
			Requests map[string]string `json:"requests"`
		} `json:"resources"`
		VolumeMounts []struct {
			Name      string `json:"name"`
			MountPath string `json:"mountPath"`
		} `json:"volumeMounts"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port any    `json:"port"`
		} `json:"httpGet"`
	}
	volume struct {
		Name   string `json:"name"`
		Secret *struct {
			SecretName string `json:"secretName"`
		} `json:"secret"`
	}
	servicePort struct {
		Name string `json:"name"`
		Port int    `json:"port"`
	}
	scaleTargetRef struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	}
	trigger struct {
		Type     string            `json:"type"`
		Metadata map[string]string `json:"metadata"`
	}
)

// build runs kustomize on deploy/k8s/<dir> and returns the objects by
// kind and name.
func build(t *testing.T, dir string) map[string]map[string]object {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("../../deploy/k8s", dir))
	if err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), root)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := map[string]map[string]object{}
	for _, r := range res.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var o object
		if err := yaml.Unmarshal(b, &o); err != nil {
			t.Fatalf("%s %s: %v", r.GetKind(), r.GetName(), err)
		}
		if out[o.Kind] == nil {
			out[o.Kind] = map[string]object{}
		}
		out[o.Kind][o.Metadata.Name] = o
	}
	return out
}

// adminKey is the variable of a Config's AdminAddr field and its default.
func adminKey(t *testing.T, spec any) (key, def string) {
	t.Helper()
	f, ok := reflect.TypeOf(spec).Elem().FieldByName("AdminAddr")
	if !ok {
		t.Fatalf("%T has no AdminAddr", spec)
	}
	return f.Tag.Get("envconfig"), f.Tag.Get("default")
}

// portOf is the port number of an address like ":8081".
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// checkWorkloads runs the checks every build passes and returns each
// darklaunch container's environment (valueFrom entries as "valueFrom").
func checkWorkloads(t *testing.T, objs map[string]map[string]object) map[string]map[string]string {
	t.Helper()
	if len(objs["Secret"]) > 0 {
		t.Errorf("the manifests write Secrets (%v): reference them, create them apart (docs/deploy.md)", slices.Collect(mapsKeys(objs["Secret"])))
	}
	envs := map[string]map[string]string{}
	for name, spec := range serviceSpecs() {
		d, ok := objs["Deployment"][name]
		if !ok || d.Spec.Template == nil {
			t.Errorf("no Deployment %s", name)
			continue
		}
		pod := d.Spec.Template
		if len(pod.Spec.Containers) != 1 || pod.Spec.Containers[0].Name != name {
			t.Errorf("Deployment %s: want one container named %s", name, name)
			continue
		}
		c := pod.Spec.Containers[0]
		known, err := config.Keys(spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := reflect.TypeOf(config.NATS{}).FieldByName("NATSReplicas"); !ok {
			// NATS_REPLICAS comes with issue 11's NATS cluster work (branch
			// cluster), merged apart from these manifests: until config.NATS
			// has it, it is the one name taken on trust. Remove this once
			// merged (the check then applies to it like to every name).
			t.Logf("%s: NATS_REPLICAS is not a setting of config.NATS yet: not checked", name)
			known = append(known, "NATS_REPLICAS")
		}
		env := map[string]string{}
		for _, from := range c.EnvFrom {
			switch {
			case from.SecretRef != nil:
				t.Errorf("%s: envFrom secret %s: its keys cannot be checked; use secretKeyRef per variable", name, from.SecretRef.Name)
			case from.ConfigMapRef != nil:
				cm, ok := objs["ConfigMap"][from.ConfigMapRef.Name]
				if !ok {
					t.Errorf("%s: envFrom names ConfigMap %s, which the manifests do not define", name, from.ConfigMapRef.Name)
				}
				for k, v := range cm.Data {
					env[k] = v
				}
			}
		}
		for _, e := range c.Env {
			switch {
			case e.Value != nil:
				env[e.Name] = *e.Value
			case e.ValueFrom != nil:
				env[e.Name] = "valueFrom"
			}
		}
		for k := range env {
			if !slices.Contains(known, k) {
				t.Errorf("%s: the manifests set %s, which the service does not read", name, k)
			}
		}
		envs[name] = env

		// Probes: both, on an admin route, on the admin port.
		key, def := adminKey(t, spec)
		addr := def
		if v, ok := env[key]; ok {
			addr = v
		}
		admin := portOf(t, addr)
		for what, p := range map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s probe", name, what)
				continue
			}
			port := -1
			switch v := p.HTTPGet.Port.(type) {
			case float64:
				port = int(v)
			case string:
				for _, cp := range c.Ports {
					if cp.Name == v {
						port = cp.ContainerPort
					}
				}
			}
			if port != admin {
				t.Errorf("%s: %s probe on port %v (%d), but %s=%s puts the admin server on %d", name, what, p.HTTPGet.Port, port, key, addr, admin)
			}
			if !slices.Contains(adminRoutes[name], p.HTTPGet.Path) {
				t.Errorf("%s: %s probe on %s, which its admin server does not serve (%v)", name, what, p.HTTPGet.Path, adminRoutes[name])
			}
		}
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
			t.Errorf("%s: no cpu and memory requests", name)
		}
		// A file setting points into a mounted Secret.
		for k, v := range env {
			if !strings.HasSuffix(k, "_FILE") || v == "" {
				continue
			}
			mounted := false
			for _, m := range c.VolumeMounts {
				if !strings.HasPrefix(v, strings.TrimSuffix(m.MountPath, "/")+"/") {
					continue
				}
				for _, vol := range pod.Spec.Volumes {
					if vol.Name == m.Name && vol.Secret != nil {
						mounted = true
					}
				}
			}
			if !mounted {
				t.Errorf("%s: %s=%s is not in a mounted Secret", name, k, v)
			}
		}
		if !covered(objs, pod.Metadata.Labels) {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", name)
		}
	}
	// NATS runs as many servers as the streams have replicas, with a
	// budget; ClickHouse and Redis are external.
	nats, ok := objs["StatefulSet"]["nats"]
	if !ok || nats.Spec.Replicas == nil {
		t.Fatal("no StatefulSet nats with replicas")
	}
	for name, env := range envs {
		n, err := strconv.Atoi(env["NATS_REPLICAS"])
		if err != nil || n < 1 || n > *nats.Spec.Replicas {
			t.Errorf("%s: NATS_REPLICAS=%q for %d NATS servers", name, env["NATS_REPLICAS"], *nats.Spec.Replicas)
		}
	}
	if !covered(objs, nats.Spec.Template.Metadata.Labels) {
		t.Error("nats: no PodDisruptionBudget selects its pods")
	}
	// JetStream reserves each stream's NATS_STREAM_MAX_BYTES on every
	// replica, and a server holds at most one replica of each of the
	// three: they must fit in its max_file_store, or no stream is made.
	storeMax := natsMaxFileStore(t, objs)
	for name, env := range envs {
		streamMax := stream.DefaultLimits.MaxBytes
		if v, ok := env["NATS_STREAM_MAX_BYTES"]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Errorf("%s: NATS_STREAM_MAX_BYTES=%q: %v", name, v, err)
			}
			streamMax = n
		}
		if 3*streamMax > storeMax {
			t.Errorf("%s: 3 streams x NATS_STREAM_MAX_BYTES %d = %d bytes do not fit in the NATS servers' max_file_store of %d",
				name, streamMax, 3*streamMax, storeMax)
		}
	}
	if ch := objs["Service"]["clickhouse"]; ch.Spec.Type != "ExternalName" {
		t.Errorf("Service clickhouse is %q, want ExternalName", ch.Spec.Type)
	}
	if r, ok := objs["Service"]["redis"]; !ok || r.Spec.Selector != nil || len(objs["EndpointSlice"]) == 0 {
		t.Error("Service redis: want a Service without selector and its EndpointSlice")
	}
	return envs
}

// natsMaxFileStore is the max_file_store of the nats.conf the NATS
// servers mount, as nats-server reads it (its own config parser).
func natsMaxFileStore(t *testing.T, objs map[string]map[string]object) int64 {
	t.Helper()
	for name, cm := range objs["ConfigMap"] {
		if !strings.HasPrefix(name, "nats-config") {
			continue
		}
		// The StatefulSet gives each server its POD_NAME; included files
		// (credentials, from Secrets) are not in the build.
		t.Setenv("POD_NAME", "nats-0")
		var lines []string
		for line := range strings.Lines(cm.Data["nats.conf"]) {
			if !strings.HasPrefix(strings.TrimSpace(line), "include ") {
				lines = append(lines, line)
			}
		}
		parsed, err := natsconf.Parse(strings.Join(lines, ""))
		if err != nil {
			t.Fatalf("nats.conf: %v", err)
		}
		js, _ := parsed["jetstream"].(map[string]any)
		if n, ok := js["max_file_store"].(int64); ok {
			return n
		}
		t.Fatal("nats.conf: no jetstream.max_file_store (JetStream would take 75% of whatever disk is free)")
	}
	t.Fatal("no ConfigMap nats-config")
	return 0
}

// covered reports whether a PodDisruptionBudget selects pods labelled so.
func covered(objs map[string]map[string]object, labels map[string]string) bool {
	for _, pdb := range objs["PodDisruptionBudget"] {
		if pdb.Spec.Selector == nil || len(pdb.Spec.Selector.MatchLabels) == 0 {
			continue
		}
		match := true
		for k, v := range pdb.Spec.Selector.MatchLabels {
			if labels[k] != v {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestKubernetesBase(t *testing.T) {
	objs := build(t, "base")
	envs := checkWorkloads(t, objs)
	for name, env := range envs {
		if env["NATS_REPLICAS"] != "1" {
			t.Errorf("base: %s has NATS_REPLICAS=%q, want 1 (one NATS server)", name, env["NATS_REPLICAS"])
		}
	}
	for _, w := range []string{"shadow-runner", "comparator"} {
		hpa, ok := objs["HorizontalPodAutoscaler"][w]
		if !ok || hpa.Spec.Target == nil || hpa.Spec.Target.Name != w {
			t.Errorf("base: no HPA scales %s", w)
		}
	}
}

func TestKubernetesProduction(t *testing.T) {
	objs := build(t, "overlays/production")
	envs := checkWorkloads(t, objs)
	for name, env := range envs {
		if env["NATS_REPLICAS"] != "3" {
			t.Errorf("production: %s has NATS_REPLICAS=%q, want 3", name, env["NATS_REPLICAS"])
		}
		if env["NATS_CREDS_FILE"] == "" {
			t.Errorf("production: %s has no NATS_CREDS_FILE", name)
		}
	}
	nats := objs["StatefulSet"]["nats"]
	if *nats.Spec.Replicas != 3 {
		t.Errorf("production: %d NATS servers, want 3", *nats.Spec.Replicas)
	}
	// The NATS configuration the StatefulSet mounts routes to each server.
	var conf string
	for name, cm := range objs["ConfigMap"] {
		if strings.HasPrefix(name, "nats-config") {
			conf = cm.Data["nats.conf"]
		}
	}
	for i := range *nats.Spec.Replicas {
		if route := fmt.Sprintf("nats://nats-%d.nats-headless:6222", i); !strings.Contains(conf, route) {
			t.Errorf("production: nats.conf has no route %s", route)
		}
	}
	if !strings.Contains(conf, "jetstream") {
		t.Error("production: nats.conf does not enable JetStream")
	}

	// KEDA scales each worker on its own stream's consumer, reading the
	// NATS monitoring port; the base's HPAs are gone (they would fight
	// KEDA's).
	monitor := 0
	for _, p := range objs["Service"]["nats-headless"].Spec.Ports {
		if p.Name == "monitor" {
			monitor = p.Port
		}
	}
	for w, want := range map[string][2]string{
		"shadow-runner": {stream.EnvelopesStream, stream.RunnerConsumer},
		"comparator":    {stream.PairsStream, stream.ComparatorConsumer},
	} {
		if _, ok := objs["HorizontalPodAutoscaler"][w]; ok {
			t.Errorf("production: the base's HPA %s is still there beside KEDA", w)
		}
		so, ok := objs["ScaledObject"][w]
		if !ok || so.Spec.Target == nil || so.Spec.Target.Name != w || len(so.Spec.Triggers) != 1 {
			t.Errorf("production: no ScaledObject scales %s", w)
			continue
		}
		tr := so.Spec.Triggers[0]
		if tr.Type != "nats-jetstream" || tr.Metadata["stream"] != want[0] || tr.Metadata["consumer"] != want[1] {
			t.Errorf("production: %s scales on %s %s/%s, want nats-jetstream %s/%s", w, tr.Type, tr.Metadata["stream"], tr.Metadata["consumer"], want[0], want[1])
		}
		if n, err := strconv.Atoi(tr.Metadata["lagThreshold"]); err != nil || n <= 0 {
			t.Errorf("production: %s lagThreshold %q", w, tr.Metadata["lagThreshold"])
		}
		host, port, err := net.SplitHostPort(tr.Metadata["natsServerMonitoringEndpoint"])
		if err != nil || !strings.HasPrefix(host, "nats-headless.darklaunch.") || port != strconv.Itoa(monitor) {
			t.Errorf("production: %s reads NATS monitoring at %q, want the nats-headless service's port %d", w, tr.Metadata["natsServerMonitoringEndpoint"], monitor)
		}
	}
	if env := envs["comparator"]; env["CLICKHOUSE_CLUSTER"] == "" || env["CLICKHOUSE_TLS"] != "true" {
		t.Errorf("production: the comparator's ClickHouse settings %v", env)
	}
}
