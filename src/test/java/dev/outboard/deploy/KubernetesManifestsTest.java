package dev.outboard.deploy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.fail;

import dev.outboard.deploy.Manifests.InvalidManifestException;
import dev.outboard.deploy.Manifests.Manifest;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.EnvFromSource;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.HTTPGetAction;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.IntOrString;
import io.fabric8.kubernetes.api.model.LabelSelector;
import io.fabric8.kubernetes.api.model.LifecycleHandler;
import io.fabric8.kubernetes.api.model.PodTemplateSpec;
import io.fabric8.kubernetes.api.model.SecretKeySelector;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.api.model.ServicePort;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyEgressRule;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyIngressRule;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyPeer;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyPort;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import io.fabric8.kubernetes.api.model.rbac.PolicyRule;
import io.fabric8.kubernetes.api.model.rbac.Role;
import io.fabric8.kubernetes.api.model.rbac.RoleBinding;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import tools.jackson.databind.node.ObjectNode;

/**
 * The manifests in k8s/ render with {@code kubectl kustomize}, parse strictly into the Kubernetes
 * object model (fabric8), and say what README "Deploy" promises: a rolling update that never drops
 * below three harness nodes, a shutdown that fits its grace period, probes and discovery from
 * pekko-management, the app version from the version label, selectors that select, a sandbox host
 * without egress, and configuration from the ConfigMap and the documented secrets. The manifests
 * are not applied to a cluster.
 *
 * <p>Needs kubectl (with its built-in kustomize): skipped with a notice where it is missing, except
 * under {@code CI=true}, where that fails. Runs in its own surefire execution (tag {@code
 * k8s-manifests}, see pom.xml): fabric8 8 needs newer jackson-annotations than the service.
 */
@Tag("k8s-manifests")
class KubernetesManifestsTest {

  private static final Path BASE = Path.of("k8s/base");
  private static final Path PRODUCTION = Path.of("k8s/overlays/production");
  private static final String NAMESPACE = "outboard";
  private static final String VERSION_LABEL = "app.kubernetes.io/version";

  /**
   * What CoordinatedShutdown may take at most: the sum of its phases' timeouts in the service's own
   * configuration (src/main/resources/cluster.conf). The grace period must cover the preStop wait
   * plus this.
   */
  private static final long COORDINATED_SHUTDOWN_SECONDS = coordinatedShutdownBoundSeconds();

  static long coordinatedShutdownBoundSeconds() {
    com.typesafe.config.Config shutdown =
        com.typesafe.config.ConfigFactory.load().getConfig("pekko.coordinated-shutdown");
    java.time.Duration fallback = shutdown.getDuration("default-phase-timeout");
    com.typesafe.config.Config phases = shutdown.getConfig("phases");
    java.time.Duration total = java.time.Duration.ZERO;
    for (String phase : phases.root().keySet()) {
      com.typesafe.config.Config p =
          phases.getConfig(com.typesafe.config.ConfigUtil.quoteString(phase));
      total = total.plus(p.hasPath("timeout") ? p.getDuration("timeout") : fallback);
    }
    return total.toSeconds();
  }

  /** The secrets that README "Deploy" tells the operator to create, with their keys. */
  private static final Map<String, Set<String>> DOCUMENTED_SECRETS =
      Map.of(
          "outboard-db", Set.of("url", "user", "password"),
          "outboard-admin", Set.of("token"),
          "outboard-sandbox-host", Set.of("token"),
          "outboard-vault", Set.of("key"));

  /**
   * Variables that the pods may set besides those the HOCON reads: the JVM's own, and the app
   * version that cluster.conf maps to pekko.cluster.app-version.
   */
  private static final Set<String> OTHER_KNOWN_VARIABLES =
      Set.of("JAVA_TOOL_OPTIONS", "OUTBOARD_APP_VERSION");

  private static String baseYaml;
  private static String productionYaml;
  private static List<Manifest> base;
  private static List<Manifest> production;

  @BeforeAll
  static void render() {
    Optional<Path> kubectl = Manifests.kubectl();
    if (kubectl.isEmpty()) {
      String notice =
          "kubectl is not installed (not on the PATH, not at /usr/bin/kubectl);"
              + " KubernetesManifestsTest skipped, the k8s/ manifests were NOT validated";
      if ("true".equalsIgnoreCase(System.getenv("CI"))) {
        fail(notice + "; CI=true, so the manifests test must not be skipped");
      }
      System.err.println("SKIPPED: " + notice);
      Assumptions.assumeTrue(false, "SKIPPED: " + notice);
    }
    baseYaml = Manifests.render(kubectl.get(), BASE);
    productionYaml = Manifests.render(kubectl.get(), PRODUCTION);
    base = Manifests.parse("kubectl kustomize " + BASE, baseYaml);
    production = Manifests.parse("kubectl kustomize " + PRODUCTION, productionYaml);
  }

  // --- What is there ------------------------------------------------------------------------

  @Test
  void theOverlayRendersEveryObjectOfTheDeploymentAsAConcreteKubernetesType() {
    Map<String, Long> kinds = new LinkedHashMap<>();
    production.forEach(m -> kinds.merge(m.object().getKind(), 1L, Long::sum));
    assertThat(kinds)
        .as("kinds rendered by %s", PRODUCTION)
        .containsKeys(
            "Deployment",
            "PodDisruptionBudget",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Service",
            "StatefulSet",
            "NetworkPolicy",
            "ConfigMap");
    assertThat(kinds.get("NetworkPolicy"))
        .as("NetworkPolicies (sandbox host and harness at least)")
        .isGreaterThanOrEqualTo(2);
    for (Manifest m : production) {
      assertThat(m.object().getClass().getPackageName())
          .as("%s parsed as", m.describe())
          .startsWith("io.fabric8.kubernetes.api.model");
      assertThat(m.object().getMetadata().getNamespace())
          .as("namespace of %s in %s", m.describe(), PRODUCTION)
          .isEqualTo(NAMESPACE);
    }
    assertThat(base).as("the base renders and parses strictly too").hasSameSizeAs(production);
  }

  @Test
  void everyObjectHasAUniqueKindAndName() {
    Set<String> seen = new HashSet<>();
    for (Manifest m : production) {
      assertThat(seen.add(m.describe())).as("%s appears more than once", m.describe()).isTrue();
    }
  }

  // --- The harness Deployment ---------------------------------------------------------------

  @Test
  void harnessRollsOutOneExtraPodAtATimeAndNeverBelowThree() {
    Deployment d = harness(production);
    assertThat(d.getSpec().getReplicas()).as("Deployment outboard spec.replicas").isEqualTo(3);
    assertThat(d.getSpec().getStrategy().getType())
        .as("Deployment outboard spec.strategy.type")
        .isEqualTo("RollingUpdate");
    assertThat(d.getSpec().getStrategy().getRollingUpdate().getMaxUnavailable())
        .as("Deployment outboard spec.strategy.rollingUpdate.maxUnavailable")
        .isEqualTo(new IntOrString(0));
    assertThat(d.getSpec().getStrategy().getRollingUpdate().getMaxSurge())
        .as("Deployment outboard spec.strategy.rollingUpdate.maxSurge")
        .isEqualTo(new IntOrString(1));
  }

  @Test
  void harnessPodOutlivesThePreStopWaitAndCoordinatedShutdown() {
    for (List<Manifest> rendering : List.of(base, production)) {
      PodTemplateSpec pod = harness(rendering).getSpec().getTemplate();
      Container c = harnessContainer(rendering);
      assertThat(c.getLifecycle())
          .as("lifecycle of container %s (preStop)", c.getName())
          .isNotNull();
      long wait = preStopWaitSeconds(c.getLifecycle().getPreStop(), c.getName());
      assertThat(wait)
          .as(
              "preStop wait of container %s: long enough for endpoints to drop the pod",
              c.getName())
          .isBetween(3L, 15L);
      Long grace = pod.getSpec().getTerminationGracePeriodSeconds();
      assertThat(grace)
          .as("Deployment outboard spec.template.spec.terminationGracePeriodSeconds")
          .isNotNull();
      assertThat(grace)
          .as(
              "terminationGracePeriodSeconds must exceed preStop %d s + CoordinatedShutdown %d s",
              wait, COORDINATED_SHUTDOWN_SECONDS)
          .isGreaterThan(wait + COORDINATED_SHUTDOWN_SECONDS);
    }
  }

  @Test
  void probesArePekkoManagementsReadyAndAliveOnTheManagementPort() {
    Container c = harnessContainer(production);
    assertThat(c.getReadinessProbe()).as("readinessProbe of container %s", c.getName()).isNotNull();
    assertThat(c.getLivenessProbe()).as("livenessProbe of container %s", c.getName()).isNotNull();
    HTTPGetAction ready = c.getReadinessProbe().getHttpGet();
    HTTPGetAction alive = c.getLivenessProbe().getHttpGet();
    assertThat(ready).as("readinessProbe.httpGet of container %s", c.getName()).isNotNull();
    assertThat(alive).as("livenessProbe.httpGet of container %s", c.getName()).isNotNull();
    assertThat(ready.getPath()).as("readinessProbe path").isEqualTo("/ready");
    assertThat(alive.getPath()).as("livenessProbe path").isEqualTo("/alive");
    assertThat(containerPort(c, ready.getPort()))
        .as("readinessProbe port %s", ready.getPort().getValue())
        .isEqualTo(8558);
    assertThat(containerPort(c, alive.getPort()))
        .as("livenessProbe port %s", alive.getPort().getValue())
        .isEqualTo(8558);
  }

  @Test
  void appVersionComesFromTheVersionLabelWhichTheOverlaySetsToTheImageTag() {
    for (List<Manifest> rendering : List.of(base, production)) {
      EnvVar v = env(harnessContainer(rendering), "OUTBOARD_APP_VERSION");
      assertThat(v.getValueFrom()).as("OUTBOARD_APP_VERSION.valueFrom").isNotNull();
      assertThat(v.getValueFrom().getFieldRef())
          .as("OUTBOARD_APP_VERSION.valueFrom.fieldRef")
          .isNotNull();
      assertThat(v.getValueFrom().getFieldRef().getFieldPath())
          .as("OUTBOARD_APP_VERSION fieldRef.fieldPath")
          .isEqualTo("metadata.labels['" + VERSION_LABEL + "']");
      assertThat(harness(rendering).getSpec().getTemplate().getMetadata().getLabels())
          .as(
              "pod template labels of Deployment outboard (OUTBOARD_APP_VERSION reads %s)",
              VERSION_LABEL)
          .containsKey(VERSION_LABEL);
    }
    String image = harnessContainer(production).getImage();
    assertThat(image).as("image of the harness in %s", PRODUCTION).contains(":");
    String tag = image.substring(image.lastIndexOf(':') + 1);
    assertThat(
            harness(production)
                .getSpec()
                .getTemplate()
                .getMetadata()
                .getLabels()
                .get(VERSION_LABEL))
        .as(
            "%s on the harness pods in %s must equal the image tag of %s (bump both together)",
            VERSION_LABEL, PRODUCTION, image)
        .isEqualTo(tag);
  }

  @Test
  void resourcesAreRequestedAndMemoryIsLimited() {
    for (Container c : List.of(harnessContainer(production), sandboxHostContainer(production))) {
      assertThat(c.getResources()).as("resources of container %s", c.getName()).isNotNull();
      assertThat(c.getResources().getRequests())
          .as("resources.requests of container %s", c.getName())
          .containsKeys("cpu", "memory");
      assertThat(c.getResources().getLimits())
          .as("resources.limits of container %s", c.getName())
          .containsKey("memory");
    }
  }

  // --- Configuration and secrets ------------------------------------------------------------

  @Test
  void nonSecretSettingsComeFromTheConfigMapThatExists() {
    Container c = harnessContainer(production);
    assertThat(c.getEnvFrom()).as("envFrom of container %s", c.getName()).isNotEmpty();
    Set<String> configMaps = names(production, ConfigMap.class);
    for (EnvFromSource from : c.getEnvFrom()) {
      assertThat(from.getConfigMapRef())
          .as("envFrom of container %s takes ConfigMaps only (secrets go by key)", c.getName())
          .isNotNull();
      assertThat(configMaps)
          .as(
              "ConfigMaps rendered; container %s reads envFrom %s",
              c.getName(), from.getConfigMapRef().getName())
          .contains(from.getConfigMapRef().getName());
      assertThat(from.getConfigMapRef().getOptional())
          .as("envFrom %s optional", from.getConfigMapRef().getName())
          .isNotEqualTo(Boolean.TRUE);
    }
    Map<String, String> config = configMapData(production, c);
    assertThat(config)
        .as("ConfigMap data")
        .containsKeys(
            "OUTBOARD_LOG_LEVEL", "OUTBOARD_SERVICE_NAME", "OUTBOARD_REQUIRED_CONTACT_POINTS");
    Set<String> shadowed = new TreeSet<>(config.keySet());
    shadowed.retainAll(envNames(c));
    assertThat(shadowed)
        .as(
            "keys both in the ConfigMap and in env of container %s (env would silently win)",
            c.getName())
        .isEmpty();
  }

  @Test
  void discoveryLooksForThePodsByTheirAppLabel() {
    Container c = harnessContainer(production);
    String serviceName = configMapData(production, c).get("OUTBOARD_SERVICE_NAME");
    assertThat(serviceName)
        .as(
            "OUTBOARD_SERVICE_NAME must equal the harness pods' app label: conf/kubernetes.conf"
                + " discovers pods by app=%%s")
        .isEqualTo(
            harness(production).getSpec().getTemplate().getMetadata().getLabels().get("app"));
    assertThat(
            Integer.parseInt(configMapData(production, c).get("OUTBOARD_REQUIRED_CONTACT_POINTS")))
        .as("OUTBOARD_REQUIRED_CONTACT_POINTS (at most the replicas, or no cluster ever forms)")
        .isBetween(1, harness(production).getSpec().getReplicas());
  }

  @Test
  void everyVariableSetIsOneTheConfigurationReads() throws IOException {
    Set<String> known = new TreeSet<>(variablesReadByHocon());
    known.addAll(OTHER_KNOWN_VARIABLES);
    Container harness = harnessContainer(production);
    Container sandboxHost = sandboxHostContainer(production);
    Map<String, Set<String>> set = new LinkedHashMap<>();
    set.put("env of container " + harness.getName(), envNames(harness));
    set.put(
        "ConfigMap data read by container " + harness.getName(),
        configMapData(production, harness).keySet());
    set.put("env of container " + sandboxHost.getName(), envNames(sandboxHost));
    set.forEach(
        (where, names) ->
            assertThat(known)
                .as(
                    "%s sets a variable that no ${?VAR} in src/main/resources/*.conf or conf/*.conf"
                        + " reads (a typo?)",
                    where)
                .containsAll(names));
  }

  @Test
  void secretsAreTheDocumentedOnes() {
    Map<String, Set<String>> used = new LinkedHashMap<>();
    for (Container c : List.of(harnessContainer(production), sandboxHostContainer(production))) {
      for (EnvVar v : c.getEnv()) {
        SecretKeySelector ref =
            v.getValueFrom() == null ? null : v.getValueFrom().getSecretKeyRef();
        if (ref != null) {
          assertThat(DOCUMENTED_SECRETS)
              .as(
                  "secret of env %s in container %s (README \"Deploy\" documents these)",
                  v.getName(), c.getName())
              .containsKey(ref.getName());
          assertThat(DOCUMENTED_SECRETS.get(ref.getName()))
              .as(
                  "key of secret %s read by env %s in container %s",
                  ref.getName(), v.getName(), c.getName())
              .contains(ref.getKey());
          used.computeIfAbsent(ref.getName(), k -> new TreeSet<>()).add(ref.getKey());
        }
      }
    }
    assertThat(used)
        .as("secret keys read by the pods")
        .isEqualTo(
            Map.of(
                "outboard-db", new TreeSet<>(DOCUMENTED_SECRETS.get("outboard-db")),
                "outboard-admin", new TreeSet<>(DOCUMENTED_SECRETS.get("outboard-admin")),
                "outboard-sandbox-host",
                    new TreeSet<>(DOCUMENTED_SECRETS.get("outboard-sandbox-host")),
                "outboard-vault", new TreeSet<>(DOCUMENTED_SECRETS.get("outboard-vault"))));
    Container c = harnessContainer(production);
    assertThat(envNames(c))
        .as("env of container %s", c.getName())
        .contains(
            "POD_IP",
            "JAVA_TOOL_OPTIONS",
            "OUTBOARD_SANDBOX_HOST_URL",
            "OUTBOARD_SANDBOX_HOST_TOKEN",
            "OUTBOARD_ADMIN_TOKEN",
            "OUTBOARD_VAULT_KEY");
  }

  @Test
  void harnessReachesTheSandboxHostThroughItsService() {
    URI url = URI.create(env(harnessContainer(production), "OUTBOARD_SANDBOX_HOST_URL").getValue());
    Service service = byName(production, Service.class, url.getHost());
    assertThat(service.getSpec().getPorts())
        .as("ports of Service %s (OUTBOARD_SANDBOX_HOST_URL %s)", url.getHost(), url)
        .extracting(ServicePort::getPort)
        .contains(url.getPort());
    StatefulSet sts = only(production, StatefulSet.class);
    assertThat(selects(service.getSpec().getSelector(), sts.getSpec().getTemplate()))
        .as(
            "Service %s selects the pods of StatefulSet %s",
            url.getHost(), sts.getMetadata().getName())
        .isTrue();
    assertThat(names(production, Service.class))
        .as(
            "Services; StatefulSet %s has serviceName %s",
            sts.getMetadata().getName(), sts.getSpec().getServiceName())
        .contains(sts.getSpec().getServiceName());
  }

  // --- Selectors ----------------------------------------------------------------------------

  @Test
  void workloadSelectorsMatchTheirOwnPodTemplates() {
    Deployment d = harness(production);
    assertThat(selects(d.getSpec().getSelector(), d.getSpec().getTemplate()))
        .as("Deployment outboard spec.selector matches its template")
        .isTrue();
    StatefulSet s = only(production, StatefulSet.class);
    assertThat(selects(s.getSpec().getSelector(), s.getSpec().getTemplate()))
        .as("StatefulSet %s spec.selector matches its template", s.getMetadata().getName())
        .isTrue();
    assertThat(d.getSpec().getTemplate().getMetadata().getLabels())
        .as("harness pod labels")
        .containsEntry("app", "outboard");
  }

  @Test
  void theDisruptionBudgetKeepsTwoHarnessPods() {
    PodDisruptionBudget pdb = only(production, PodDisruptionBudget.class);
    String name = "PodDisruptionBudget " + pdb.getMetadata().getName();
    PodTemplateSpec harnessPod = harness(production).getSpec().getTemplate();
    assertThat(selects(pdb.getSpec().getSelector(), harnessPod))
        .as(
            "%s spec.selector matches the harness pod labels %s",
            name, harnessPod.getMetadata().getLabels())
        .isTrue();
    assertThat(
            selects(
                pdb.getSpec().getSelector(),
                only(production, StatefulSet.class).getSpec().getTemplate()))
        .as("%s must not select the sandbox host", name)
        .isFalse();
    IntOrString min = pdb.getSpec().getMinAvailable();
    IntOrString max = pdb.getSpec().getMaxUnavailable();
    assertThat(Objects.equals(min, new IntOrString(2)) || Objects.equals(max, new IntOrString(1)))
        .as(
            "%s: minAvailable 2 or maxUnavailable 1 (was minAvailable %s, maxUnavailable %s)",
            name, value(min), value(max))
        .isTrue();
  }

  @Test
  void everyServiceSelectsPodsAndTargetsAPortTheyHave() {
    for (Service s : all(production, Service.class)) {
      String name = "Service " + s.getMetadata().getName();
      List<PodTemplateSpec> pods =
          podTemplates(production).stream()
              .filter(p -> selects(s.getSpec().getSelector(), p))
              .toList();
      assertThat(pods)
          .as("pod templates that %s (selector %s) selects", name, s.getSpec().getSelector())
          .isNotEmpty();
      for (ServicePort port : s.getSpec().getPorts()) {
        IntOrString target =
            port.getTargetPort() != null ? port.getTargetPort() : new IntOrString(port.getPort());
        for (PodTemplateSpec p : pods) {
          assertThat(podPort(p, target))
              .as(
                  "%s port %s: targetPort %s is not a container port of the pods it selects (%s)",
                  name, port.getName(), target.getValue(), p.getMetadata().getLabels())
              .isPresent();
        }
      }
    }
    Service api = byName(production, Service.class, "outboard");
    PodTemplateSpec harnessPod = harness(production).getSpec().getTemplate();
    assertThat(api.getSpec().getPorts())
        .as("container ports that Service outboard targets")
        .extracting(p -> podPort(harnessPod, p.getTargetPort()).orElse(-1))
        .contains(8080);
  }

  @Test
  void everyNetworkPolicySelectorSelectsPods() {
    for (NetworkPolicy np : all(production, NetworkPolicy.class)) {
      String name = "NetworkPolicy " + np.getMetadata().getName();
      assertThat(
              podTemplates(production).stream()
                  .anyMatch(p -> selects(np.getSpec().getPodSelector(), p)))
          .as(
              "%s spec.podSelector %s selects some pod template",
              name, np.getSpec().getPodSelector())
          .isTrue();
      List<NetworkPolicyPeer> peers = new ArrayList<>();
      orEmpty(np.getSpec().getIngress()).forEach(r -> peers.addAll(orEmpty(r.getFrom())));
      orEmpty(np.getSpec().getEgress()).forEach(r -> peers.addAll(orEmpty(r.getTo())));
      for (NetworkPolicyPeer peer : peers) {
        if (peer.getPodSelector() != null && peer.getNamespaceSelector() == null) {
          assertThat(
                  podTemplates(production).stream()
                      .anyMatch(p -> selects(peer.getPodSelector(), p)))
              .as("%s peer podSelector %s selects some pod template", name, peer.getPodSelector())
              .isTrue();
        }
      }
    }
  }

  // --- Network policies ---------------------------------------------------------------------

  @Test
  void theSandboxHostHasNoEgressAndOnlyHarnessPodsReachIt() {
    PodTemplateSpec sandboxPod = only(production, StatefulSet.class).getSpec().getTemplate();
    List<NetworkPolicy> policies = policiesSelecting(sandboxPod);
    assertThat(policies).as("NetworkPolicies selecting the sandbox host pods").isNotEmpty();
    for (NetworkPolicy np : policies) {
      String name = "NetworkPolicy " + np.getMetadata().getName();
      assertThat(np.getSpec().getPolicyTypes())
          .as("%s policyTypes (it selects the sandbox host)", name)
          .contains("Ingress", "Egress");
      assertThat(orEmpty(np.getSpec().getEgress()))
          .as("%s egress rules: the sandbox host gets none", name)
          .isEmpty();
      for (NetworkPolicyIngressRule rule : orEmpty(np.getSpec().getIngress())) {
        assertThat(rule.getFrom())
            .as("%s ingress rule %s: must name its sources (no 'from' = everyone)", name, rule)
            .isNotEmpty();
        for (NetworkPolicyPeer peer : rule.getFrom()) {
          assertThat(peer.getIpBlock()).as("%s ingress from ipBlock", name).isNull();
          assertThat(peer.getNamespaceSelector())
              .as("%s ingress from other namespaces", name)
              .isNull();
          assertThat(
                  selects(peer.getPodSelector(), harness(production).getSpec().getTemplate())
                      && !selects(peer.getPodSelector(), sandboxPod))
              .as("%s ingress peer %s selects harness pods only", name, peer.getPodSelector())
              .isTrue();
        }
        assertThat(rule.getPorts())
            .as("%s ingress ports", name)
            .extracting(KubernetesManifestsTest::tcpPort)
            .containsExactly(8090);
      }
    }
    assertThat(allowedIngress(sandboxPod, harness(production).getSpec().getTemplate()))
        .as("ports harness pods may reach on the sandbox host")
        .containsExactly(8090);
  }

  @Test
  void harnessPodsGetTheIngressTheyServe() {
    PodTemplateSpec harnessPod = harness(production).getSpec().getTemplate();
    PodTemplateSpec sandboxPod = only(production, StatefulSet.class).getSpec().getTemplate();
    assertThat(allowedIngress(harnessPod, null))
        .as("ports of the harness open to any source")
        .containsExactly(8080);
    assertThat(allowedIngress(harnessPod, harnessPod))
        .as("ports of the harness open to other harness pods")
        .containsExactlyInAnyOrder(8080, 8558, 25520);
    assertThat(allowedIngress(harnessPod, sandboxPod))
        .as("ports of the harness open to the sandbox host")
        .containsExactly(8080);
    for (int port : List.of(8080, 8558, 25520)) {
      assertThat(podPort(harnessPod, new IntOrString(port)))
          .as("harness container port %d (NetworkPolicy ingress)", port)
          .isPresent();
    }
  }

  @Test
  void harnessPodsGetTheEgressTheyNeed() {
    PodTemplateSpec harnessPod = harness(production).getSpec().getTemplate();
    PodTemplateSpec sandboxPod = only(production, StatefulSet.class).getSpec().getTemplate();
    List<NetworkPolicy> policies = policiesSelecting(harnessPod);
    assertThat(policies.stream().allMatch(np -> np.getSpec().getPolicyTypes().contains("Egress")))
        .as("every NetworkPolicy selecting the harness restricts egress")
        .isTrue();
    assertThat(egressAllowed(policies, null, "TCP", 5432))
        .as("harness egress to PostgreSQL (TCP 5432, outside the cluster)")
        .isTrue();
    assertThat(egressAllowed(policies, null, "TCP", 443))
        .as("harness egress to model providers / Kubernetes API (TCP 443)")
        .isTrue();
    assertThat(egressAllowed(policies, null, "TCP", 6443))
        .as("harness egress to the Kubernetes API (TCP 6443)")
        .isTrue();
    assertThat(egressAllowed(policies, null, "UDP", 53))
        .as("harness egress to DNS (UDP 53)")
        .isTrue();
    assertThat(egressAllowed(policies, null, "TCP", 53))
        .as("harness egress to DNS (TCP 53)")
        .isTrue();
    assertThat(egressAllowed(policies, sandboxPod, "TCP", 8090))
        .as("harness egress to the sandbox host (TCP 8090)")
        .isTrue();
    assertThat(egressAllowed(policies, harnessPod, "TCP", 25520))
        .as("harness egress to other harness pods (remoting 25520)")
        .isTrue();
    assertThat(egressAllowed(policies, harnessPod, "TCP", 8558))
        .as("harness egress to other harness pods (management 8558)")
        .isTrue();
    assertThat(egressAllowed(policies, null, "TCP", 22))
        .as("harness egress to anything else (TCP 22 as an example)")
        .isFalse();
    assertThat(egressAllowed(policies, null, "TCP", 8090))
        .as("harness egress to 8090 outside the sandbox host")
        .isFalse();
  }

  // --- RBAC ---------------------------------------------------------------------------------

  @Test
  void theHarnessServiceAccountMayGetWatchAndListPods() {
    String account = harness(production).getSpec().getTemplate().getSpec().getServiceAccountName();
    assertThat(names(production, ServiceAccount.class))
        .as("ServiceAccounts; Deployment outboard runs as %s", account)
        .contains(account);
    List<RoleBinding> bindings =
        all(production, RoleBinding.class).stream()
            .filter(
                b ->
                    b.getSubjects().stream()
                        .anyMatch(
                            s ->
                                "ServiceAccount".equals(s.getKind())
                                    && account.equals(s.getName())
                                    && (s.getNamespace() == null
                                        || NAMESPACE.equals(s.getNamespace()))))
            .toList();
    assertThat(bindings).as("RoleBindings of ServiceAccount %s", account).isNotEmpty();
    Set<String> verbs = new HashSet<>();
    for (RoleBinding b : bindings) {
      assertThat(b.getRoleRef().getKind())
          .as("RoleBinding %s roleRef.kind", b.getMetadata().getName())
          .isEqualTo("Role");
      assertThat(b.getRoleRef().getApiGroup())
          .as("RoleBinding %s roleRef.apiGroup", b.getMetadata().getName())
          .isEqualTo("rbac.authorization.k8s.io");
      Role role = byName(production, Role.class, b.getRoleRef().getName());
      for (PolicyRule rule : role.getRules()) {
        if (rule.getApiGroups().contains("") && rule.getResources().contains("pods")) {
          verbs.addAll(rule.getVerbs());
        }
      }
    }
    assertThat(verbs)
        .as("verbs on pods (core group) granted to ServiceAccount %s", account)
        .contains("get", "watch", "list");
  }

  // --- Strictness ---------------------------------------------------------------------------

  @Test
  void aTypoInADeploymentFieldFailsNamingTheObjectAndTheField() {
    ObjectNode deployment = renderedDeployment();
    ((ObjectNode) deployment.get("spec")).put("replicaz", 3);
    assertThatThrownBy(
            () ->
                Manifests.parse(
                    "an edited rendering", Manifests.MAPPER.writeValueAsString(deployment)))
        .isInstanceOf(InvalidManifestException.class)
        .hasMessageContaining("Deployment outboard: unknown field spec.replicaz");

    ObjectNode podSpec = renderedDeployment();
    ((ObjectNode) podSpec.get("spec").get("template").get("spec"))
        .put("terminationGracePeriodSecond", 45);
    assertThatThrownBy(
            () ->
                Manifests.parse(
                    "an edited rendering", Manifests.MAPPER.writeValueAsString(podSpec)))
        .isInstanceOf(InvalidManifestException.class)
        .hasMessageContaining(
            "Deployment outboard: unknown field spec.template.spec.terminationGracePeriodSecond");

    ObjectNode container = renderedDeployment();
    ((ObjectNode)
            container
                .get("spec")
                .get("template")
                .get("spec")
                .get("containers")
                .get(0)
                .get("lifecycle"))
        .set(
            "preStopp",
            container
                .get("spec")
                .get("template")
                .get("spec")
                .get("containers")
                .get(0)
                .get("lifecycle")
                .get("preStop"));
    assertThatThrownBy(
            () ->
                Manifests.parse(
                    "an edited rendering", Manifests.MAPPER.writeValueAsString(container)))
        .isInstanceOf(InvalidManifestException.class)
        .hasMessageContaining(
            "Deployment outboard: unknown field"
                + " spec.template.spec.containers[0].lifecycle.preStopp");
  }

  @Test
  void aValueOfTheWrongTypeFails() {
    ObjectNode deployment = renderedDeployment();
    ((ObjectNode) deployment.get("spec")).put("replicas", "3");
    assertThatThrownBy(
            () ->
                Manifests.parse(
                    "an edited rendering", Manifests.MAPPER.writeValueAsString(deployment)))
        .isInstanceOf(InvalidManifestException.class)
        .hasMessageContaining("kind Deployment, name outboard")
        .hasMessageContaining("field spec.replicas: Cannot coerce String value (\"3\")");
  }

  @Test
  void anUnknownKindFails() {
    ObjectNode deployment = renderedDeployment();
    deployment.put("kind", "Deploymnet");
    assertThatThrownBy(
            () ->
                Manifests.parse(
                    "an edited rendering", Manifests.MAPPER.writeValueAsString(deployment)))
        .isInstanceOf(InvalidManifestException.class)
        .hasMessageContaining("kind Deploymnet, name outboard")
        .hasMessageContaining("not a type of the Kubernetes model");

    ObjectNode wrongGroup = renderedDeployment();
    wrongGroup.put("apiVersion", "app/v1");
    assertThatThrownBy(
            () ->
                Manifests.parse(
                    "an edited rendering", Manifests.MAPPER.writeValueAsString(wrongGroup)))
        .isInstanceOf(InvalidManifestException.class)
        .hasMessageContaining("apiVersion app/v1, kind Deployment")
        .hasMessageContaining("not a type of the Kubernetes model");
  }

  @Test
  void theRenderedManifestsThemselvesPassTheStrictParser() {
    // Guards the negative tests above: they fail because of the injected error, not anyway.
    assertThat(Manifests.parse(PRODUCTION.toString(), productionYaml)).hasSameSizeAs(production);
    assertThat(Manifests.parse(BASE.toString(), baseYaml)).hasSameSizeAs(base);
  }

  // --- Helpers ------------------------------------------------------------------------------

  private static ObjectNode renderedDeployment() {
    return (ObjectNode)
        Manifests.documents(productionYaml).stream()
            .filter(
                d ->
                    "Deployment".equals(d.path("kind").asString())
                        && "outboard".equals(d.path("metadata").path("name").asString()))
            .findFirst()
            .orElseThrow(
                () -> new AssertionError("no Deployment outboard in the production rendering"))
            .deepCopy();
  }

  private static <T extends HasMetadata> List<T> all(List<Manifest> rendering, Class<T> type) {
    return rendering.stream()
        .map(Manifest::object)
        .filter(type::isInstance)
        .map(type::cast)
        .toList();
  }

  private static <T extends HasMetadata> T only(List<Manifest> rendering, Class<T> type) {
    List<T> found = all(rendering, type);
    assertThat(found).as("objects of kind %s", type.getSimpleName()).hasSize(1);
    return found.get(0);
  }

  private static <T extends HasMetadata> T byName(
      List<Manifest> rendering, Class<T> type, String name) {
    return all(rendering, type).stream()
        .filter(o -> name.equals(o.getMetadata().getName()))
        .findFirst()
        .orElseThrow(
            () ->
                new AssertionError(
                    "no "
                        + type.getSimpleName()
                        + " named "
                        + name
                        + " in the rendering; there are "
                        + names(rendering, type)));
  }

  private static Set<String> names(List<Manifest> rendering, Class<? extends HasMetadata> type) {
    Set<String> names = new TreeSet<>();
    all(rendering, type).forEach(o -> names.add(o.getMetadata().getName()));
    return names;
  }

  private static Deployment harness(List<Manifest> rendering) {
    return byName(rendering, Deployment.class, "outboard");
  }

  private static Container harnessContainer(List<Manifest> rendering) {
    return container(harness(rendering).getSpec().getTemplate(), "outboard");
  }

  private static Container sandboxHostContainer(List<Manifest> rendering) {
    return container(only(rendering, StatefulSet.class).getSpec().getTemplate(), "sandbox-host");
  }

  private static Container container(PodTemplateSpec pod, String name) {
    return pod.getSpec().getContainers().stream()
        .filter(c -> name.equals(c.getName()))
        .findFirst()
        .orElseThrow(
            () ->
                new AssertionError(
                    "no container " + name + " in pod template " + pod.getMetadata().getLabels()));
  }

  private static List<PodTemplateSpec> podTemplates(List<Manifest> rendering) {
    return Stream.concat(
            all(rendering, Deployment.class).stream().map(d -> d.getSpec().getTemplate()),
            all(rendering, StatefulSet.class).stream().map(s -> s.getSpec().getTemplate()))
        .toList();
  }

  private static EnvVar env(Container c, String name) {
    return c.getEnv().stream()
        .filter(v -> name.equals(v.getName()))
        .findFirst()
        .orElseThrow(
            () ->
                new AssertionError(
                    "container "
                        + c.getName()
                        + " has no env "
                        + name
                        + "; it has "
                        + envNames(c)));
  }

  private static Set<String> envNames(Container c) {
    Set<String> names = new LinkedHashSet<>();
    c.getEnv().forEach(v -> names.add(v.getName()));
    return names;
  }

  private static Map<String, String> configMapData(List<Manifest> rendering, Container c) {
    Map<String, String> data = new LinkedHashMap<>();
    for (EnvFromSource from : orEmpty(c.getEnvFrom())) {
      if (from.getConfigMapRef() != null) {
        ConfigMap cm = byName(rendering, ConfigMap.class, from.getConfigMapRef().getName());
        String prefix = from.getPrefix() == null ? "" : from.getPrefix();
        Optional.ofNullable(cm.getData())
            .orElse(Map.of())
            .forEach((k, v) -> data.put(prefix + k, v));
      }
    }
    return data;
  }

  /** The seconds a preStop handler waits: Kubernetes' sleep action, or exec ["sleep", "N"]. */
  private static long preStopWaitSeconds(LifecycleHandler preStop, String container) {
    assertThat(preStop).as("lifecycle.preStop of container %s", container).isNotNull();
    if (preStop.getSleep() != null) {
      return preStop.getSleep().getSeconds();
    }
    if (preStop.getExec() != null
        && preStop.getExec().getCommand().size() == 2
        && "sleep".equals(preStop.getExec().getCommand().get(0))) {
      return Long.parseLong(preStop.getExec().getCommand().get(1));
    }
    throw new AssertionError(
        "lifecycle.preStop of container "
            + container
            + " is neither sleep nor exec [sleep, N]: "
            + preStop);
  }

  private static int containerPort(Container c, IntOrString port) {
    return portOf(List.of(c), port)
        .orElseThrow(
            () ->
                new AssertionError("container " + c.getName() + " has no port " + port.getValue()));
  }

  private static <T> List<T> orEmpty(List<T> list) {
    return list == null ? List.of() : list;
  }

  private static String protocol(NetworkPolicyPort p) {
    return p.getProtocol() == null ? "TCP" : p.getProtocol();
  }

  private static Object value(IntOrString v) {
    return v == null ? null : v.getValue();
  }

  private static Optional<Integer> podPort(PodTemplateSpec pod, IntOrString port) {
    return portOf(pod.getSpec().getContainers(), port);
  }

  /** The container port a named or numbered port refers to, if a container has it. */
  private static Optional<Integer> portOf(List<Container> containers, IntOrString port) {
    for (Container c : containers) {
      for (ContainerPort p : orEmpty(c.getPorts())) {
        if (port.getIntVal() != null
            ? port.getIntVal().equals(p.getContainerPort())
            : port.getStrVal().equals(p.getName())) {
          return Optional.of(p.getContainerPort());
        }
      }
    }
    return Optional.empty();
  }

  private static boolean selects(Map<String, String> selector, PodTemplateSpec pod) {
    Map<String, String> labels =
        Optional.ofNullable(pod.getMetadata().getLabels()).orElse(Map.of());
    return selector != null
        && !selector.isEmpty()
        && labels.entrySet().containsAll(selector.entrySet());
  }

  /** matchLabels only (an empty selector selects every pod); matchExpressions are refused. */
  private static boolean selects(LabelSelector selector, PodTemplateSpec pod) {
    assertThat(selector).as("label selector").isNotNull();
    assertThat(selector.getMatchExpressions())
        .as("matchExpressions in %s (this test reads matchLabels only)", selector)
        .isNullOrEmpty();
    Map<String, String> match = Optional.ofNullable(selector.getMatchLabels()).orElse(Map.of());
    Map<String, String> labels =
        Optional.ofNullable(pod.getMetadata().getLabels()).orElse(Map.of());
    return labels.entrySet().containsAll(match.entrySet());
  }

  private static List<NetworkPolicy> policiesSelecting(PodTemplateSpec pod) {
    return all(production, NetworkPolicy.class).stream()
        .filter(np -> selects(np.getSpec().getPodSelector(), pod))
        .toList();
  }

  private static int tcpPort(NetworkPolicyPort p) {
    assertThat(p.getPort()).as("NetworkPolicy port (none = every port)").isNotNull();
    assertThat(protocol(p))
        .as("protocol of NetworkPolicy port %s", p.getPort().getValue())
        .isEqualTo("TCP");
    assertThat(p.getPort().getIntVal())
        .as("NetworkPolicy port %s is numeric", p.getPort().getValue())
        .isNotNull();
    return p.getPort().getIntVal();
  }

  /**
   * The TCP ports of {@code target} that NetworkPolicies allow from {@code source} (a pod of this
   * namespace; null = any address outside it).
   */
  private static Set<Integer> allowedIngress(PodTemplateSpec target, PodTemplateSpec source) {
    Set<Integer> ports = new TreeSet<>();
    for (NetworkPolicy np : policiesSelecting(target)) {
      for (NetworkPolicyIngressRule rule : orEmpty(np.getSpec().getIngress())) {
        if (peersAdmit(rule.getFrom(), source)) {
          assertThat(rule.getPorts())
              .as(
                  "NetworkPolicy %s: an ingress rule without ports opens every port",
                  np.getMetadata().getName())
              .isNotEmpty();
          rule.getPorts().forEach(p -> ports.add(tcpPort(p)));
        }
      }
    }
    return ports;
  }

  private static boolean egressAllowed(
      List<NetworkPolicy> policies, PodTemplateSpec target, String protocol, int port) {
    for (NetworkPolicy np : policies) {
      for (NetworkPolicyEgressRule rule : orEmpty(np.getSpec().getEgress())) {
        boolean portMatches =
            orEmpty(rule.getPorts()).isEmpty()
                || rule.getPorts().stream()
                    .anyMatch(
                        p ->
                            protocol.equals(protocol(p))
                                && p.getPort() != null
                                && Integer.valueOf(port).equals(p.getPort().getIntVal()));
        if (portMatches && peersAdmit(rule.getTo(), target)) {
          return true;
        }
      }
    }
    return false;
  }

  /**
   * Whether a rule's peers admit a pod of this namespace (or, for null, an address outside the
   * cluster).
   */
  private static boolean peersAdmit(List<NetworkPolicyPeer> peers, PodTemplateSpec pod) {
    if (peers == null || peers.isEmpty()) {
      return true;
    }
    for (NetworkPolicyPeer peer : peers) {
      if (pod != null
          && peer.getPodSelector() != null
          && peer.getNamespaceSelector() == null
          && selects(peer.getPodSelector(), pod)) {
        return true;
      }
      if (pod == null && peer.getIpBlock() != null) {
        return true;
      }
    }
    return false;
  }

  private static final Pattern ENV_REFERENCE =
      Pattern.compile("\\$\\{\\?([A-Za-z_][A-Za-z0-9_]*)}");

  /** Every NAME in a {@code ${?NAME}} of the service's HOCON, production and overlays. */
  private static Set<String> variablesReadByHocon() throws IOException {
    Set<String> names = new TreeSet<>();
    for (Path dir : List.of(Path.of("src/main/resources"), Path.of("conf"))) {
      try (Stream<Path> files = Files.list(dir)) {
        for (Path f : files.filter(p -> p.toString().endsWith(".conf")).toList()) {
          Matcher m = ENV_REFERENCE.matcher(Files.readString(f));
          while (m.find()) {
            names.add(m.group(1));
          }
        }
      }
    }
    assertThat(names).as("variables read by the HOCON").contains("OUTBOARD_DB_URL", "POD_IP");
    return names;
  }
}
